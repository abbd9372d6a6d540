// What SQLite guarantees for one transaction over several attached database files, when the
// process dies in the middle of its COMMIT: the fact the direct_db_write variant is built on.
//
// A child process opens a.db, attaches b.db, and commits one transaction that inserts a row into
// each. It runs on a VFS that forwards everything to the default one but ends the process
// (_exit, no clean-up, as a kill -9 or a power cut would) at a chosen sync: after a.db's part of
// the commit is on disk and before b.db's is. The parent then opens both files, as the next
// process would, and counts the rows.
//
//   rollback journal (journal_mode=DELETE): atomic across files. The commit first writes a
//     super-journal naming every file's journal; a crash before it is deleted leaves hot
//     journals that point at it, and the next open rolls every file back: neither row.
//   WAL (journal_mode=WAL, the services' mode): atomic per file only. Each file's WAL frames are
//     committed one after another; a crash between them leaves a.db committed and b.db not.
//     SQLite's documentation says the same ("transactions continue to be atomic within each
//     individual database file").
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "testing_support/service_process.h"

namespace {

// The crash point: the `crash_at`-th xSync of a file whose name ends with `crash_suffix`.
std::string crash_suffix;
int crash_at = 0;
int syncs_seen = 0;

sqlite3_vfs* real_vfs = nullptr;

struct CrashFile {
  sqlite3_file base;
  sqlite3_file* real;  // Allocated right after this struct.
  std::string* name;
};

sqlite3_file* Real(sqlite3_file* file) { return reinterpret_cast<CrashFile*>(file)->real; }

int Close(sqlite3_file* file) {
  auto* crash = reinterpret_cast<CrashFile*>(file);
  const int rc = crash->real->pMethods->xClose(crash->real);
  delete crash->name;
  return rc;
}
int Read(sqlite3_file* f, void* b, int n, sqlite3_int64 o) {
  return Real(f)->pMethods->xRead(Real(f), b, n, o);
}
int Write(sqlite3_file* f, const void* b, int n, sqlite3_int64 o) {
  return Real(f)->pMethods->xWrite(Real(f), b, n, o);
}
int Truncate(sqlite3_file* f, sqlite3_int64 s) { return Real(f)->pMethods->xTruncate(Real(f), s); }
int Sync(sqlite3_file* f, int flags) {
  const std::string& name = *reinterpret_cast<CrashFile*>(f)->name;
  if (!crash_suffix.empty() && absl::EndsWith(name, crash_suffix) && ++syncs_seen == crash_at) {
    _exit(42);  // Dies before this file's data is known to be on disk.
  }
  return Real(f)->pMethods->xSync(Real(f), flags);
}
int FileSize(sqlite3_file* f, sqlite3_int64* s) { return Real(f)->pMethods->xFileSize(Real(f), s); }
int Lock(sqlite3_file* f, int l) { return Real(f)->pMethods->xLock(Real(f), l); }
int Unlock(sqlite3_file* f, int l) { return Real(f)->pMethods->xUnlock(Real(f), l); }
int CheckReservedLock(sqlite3_file* f, int* r) {
  return Real(f)->pMethods->xCheckReservedLock(Real(f), r);
}
int FileControl(sqlite3_file* f, int op, void* a) {
  return Real(f)->pMethods->xFileControl(Real(f), op, a);
}
int SectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  return Real(f)->pMethods->xDeviceCharacteristics(Real(f));
}
int ShmMap(sqlite3_file* f, int p, int s, int e, void volatile** m) {
  return Real(f)->pMethods->xShmMap(Real(f), p, s, e, m);
}
int ShmLock(sqlite3_file* f, int o, int n, int flags) {
  return Real(f)->pMethods->xShmLock(Real(f), o, n, flags);
}
void ShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int ShmUnmap(sqlite3_file* f, int d) { return Real(f)->pMethods->xShmUnmap(Real(f), d); }
int Fetch(sqlite3_file* f, sqlite3_int64 o, int n, void** p) {
  return Real(f)->pMethods->xFetch(Real(f), o, n, p);
}
int Unfetch(sqlite3_file* f, sqlite3_int64 o, void* p) {
  return Real(f)->pMethods->xUnfetch(Real(f), o, p);
}

const sqlite3_io_methods kCrashMethods = {3,
                                          Close,
                                          Read,
                                          Write,
                                          Truncate,
                                          Sync,
                                          FileSize,
                                          Lock,
                                          Unlock,
                                          CheckReservedLock,
                                          FileControl,
                                          SectorSize,
                                          DeviceCharacteristics,
                                          ShmMap,
                                          ShmLock,
                                          ShmBarrier,
                                          ShmUnmap,
                                          Fetch,
                                          Unfetch};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  auto* crash = reinterpret_cast<CrashFile*>(file);
  crash->real = reinterpret_cast<sqlite3_file*>(crash + 1);
  crash->name = new std::string(name != nullptr ? name : "");
  const int rc = real_vfs->xOpen(real_vfs, name, crash->real, flags, out_flags);
  // A file the real VFS could not open has no methods, and gets none here either.
  crash->base.pMethods = crash->real->pMethods != nullptr ? &kCrashMethods : nullptr;
  if (crash->real->pMethods == nullptr) delete crash->name;
  return rc;
}

// Registers "crash": the default VFS with Open (and so every file method) wrapped.
void RegisterCrashVfs() {
  static sqlite3_vfs vfs;
  real_vfs = sqlite3_vfs_find(nullptr);
  vfs = *real_vfs;
  vfs.zName = "crash";
  vfs.szOsFile = static_cast<int>(sizeof(CrashFile)) + real_vfs->szOsFile;
  vfs.xOpen = Open;
  sqlite3_vfs_register(&vfs, 0);
}

void Exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string message = error != nullptr ? error : "?";
    sqlite3_free(error);
    FAIL(sql << ": " << message);
  }
}

// Creates a.db and b.db in `dir` with table t, in `journal_mode`.
void Create(const std::string& dir, const std::string& journal_mode) {
  for (const char* name : {"a.db", "b.db"}) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((dir + "/" + name).c_str(), &db) == SQLITE_OK);
    Exec(db, "PRAGMA journal_mode=" + journal_mode + "; CREATE TABLE t (x INTEGER);");
    sqlite3_close(db);
  }
}

// In a child: one transaction inserting into a.db and b.db, dying at the crash point. Returns
// the child's exit code (42: it died where told).
int CommitAndCrash(const std::string& dir, const std::string& journal_mode,
                   const std::string& suffix, int nth) {
  const pid_t pid = fork();
  if (pid == 0) {
    RegisterCrashVfs();
    crash_suffix = suffix;
    crash_at = nth;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2((dir + "/a.db").c_str(), &db, SQLITE_OPEN_READWRITE, "crash") !=
        SQLITE_OK) {
      _exit(1);
    }
    const std::string sql = "PRAGMA journal_mode=" + journal_mode +
                            "; PRAGMA synchronous=FULL; ATTACH '" + dir +
                            "/b.db' AS b; PRAGMA b.journal_mode=" + journal_mode +
                            "; PRAGMA b.synchronous=FULL; BEGIN; INSERT INTO main.t VALUES (1); "
                            "INSERT INTO b.t VALUES (1); COMMIT;";
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) _exit(2);
    _exit(0);  // Committed without reaching the crash point.
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Rows in `name`'s table t, read as the next process would (recovering what the crash left).
int Rows(const std::string& dir, const char* name) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((dir + "/" + name).c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* statement = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &statement, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(statement) == SQLITE_ROW);
  const int rows = sqlite3_column_int(statement, 0);
  sqlite3_finalize(statement);
  sqlite3_close(db);
  return rows;
}

TEST_CASE("in WAL mode a crash between two attached files' commits leaves one committed",
          "[sqlite]") {
  testing_support::TempDir dir;
  Create(dir.path(), "WAL");
  // a.db's WAL is synced first, then b.db's: die at b's.
  REQUIRE(CommitAndCrash(dir.path(), "WAL", "b.db-wal", 1) == 42);
  CHECK(Rows(dir.path(), "a.db") == 1);
  CHECK(Rows(dir.path(), "b.db") == 0);
}

TEST_CASE("in rollback-journal mode a crash in the middle of a multi-file commit undoes both",
          "[sqlite]") {
  testing_support::TempDir dir;
  Create(dir.path(), "DELETE");
  // The order of a multi-file commit: the super-journal, each file's journal, then each
  // database file written and synced, a.db before b.db. Die at b.db's sync: a.db's new
  // content is already on disk.
  REQUIRE(CommitAndCrash(dir.path(), "DELETE", "/b.db", 1) == 42);
  CHECK(Rows(dir.path(), "a.db") == 0);  // Rolled back from its hot journal.
  CHECK(Rows(dir.path(), "b.db") == 0);
  // Without a crash the same transaction commits both.
  REQUIRE(CommitAndCrash(dir.path(), "DELETE", "", 0) == 0);
  CHECK(Rows(dir.path(), "a.db") == 1);
  CHECK(Rows(dir.path(), "b.db") == 1);
}

}  // namespace
