// A page of a keyset-paginated list: the items, and the position after the last one. Storage
// reads it (ReadPage, sqlite.h); handlers turn the position into an opaque page token (MovePage,
// rpc_support.h).
#ifndef HOSPITAL_SRC_SERVER_KIT_PAGE_H_
#define HOSPITAL_SRC_SERVER_KIT_PAGE_H_

#include <string>
#include <utility>
#include <vector>

namespace server_kit {

template <typename Item>
struct Page {
  std::vector<Item> items;
  // Where the next page starts; empty on the last page.
  std::string next_position;
};

}  // namespace server_kit

#endif  // HOSPITAL_SRC_SERVER_KIT_PAGE_H_
