#include "messaging/jetstream_setup.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "messaging/nats_client.h"

namespace messaging {
namespace {

std::int64_t Nanoseconds(absl::Duration duration) { return absl::ToInt64Nanoseconds(duration); }

template <typename T>
void Compare(std::vector<std::string>& differences, const char* field, const T& existing,
             const T& wanted) {
  if (existing != wanted) {
    differences.push_back(absl::StrCat(field, " is ", existing, ", flags say ", wanted));
  }
}

}  // namespace

absl::StatusOr<std::string> EnsureStream(jsCtx* jetstream, const StreamSettings& settings) {
  const std::string context = absl::StrCat("stream ", settings.name);
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus status = js_GetStreamInfo(&info, jetstream, settings.name.c_str(), nullptr, &code);
  if (status == NATS_OK) {
    const jsStreamConfig& existing = *info->Config;
    std::vector<std::string> differences;
    std::vector<std::string> subjects(existing.Subjects, existing.Subjects + existing.SubjectsLen);
    if (subjects != settings.subjects) {
      differences.push_back(absl::StrCat("subjects are [", absl::StrJoin(subjects, ","),
                                         "], flags say [", absl::StrJoin(settings.subjects, ","),
                                         "]"));
    }
    Compare<std::int64_t>(differences, "replicas", existing.Replicas, settings.replicas);
    Compare<std::int64_t>(differences, "duplicate window (ns)", existing.Duplicates,
                          Nanoseconds(settings.duplicate_window));
    Compare<std::int64_t>(differences, "max age (ns)", existing.MaxAge,
                          Nanoseconds(settings.max_age));
    if (existing.Storage != js_FileStorage) differences.push_back("storage is not file");
    jsStreamInfo_Destroy(info);
    return absl::StrJoin(differences, "; ");
  }
  absl::Status looked_up = FromJetStreamError(status, code, context);
  if (!absl::IsNotFound(looked_up)) return looked_up;

  std::vector<const char*> subjects;
  for (const std::string& subject : settings.subjects) subjects.push_back(subject.c_str());
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  config.Name = settings.name.c_str();
  config.Subjects = subjects.data();
  config.SubjectsLen = static_cast<int>(subjects.size());
  config.Storage = js_FileStorage;
  config.Retention = js_LimitsPolicy;
  config.Replicas = settings.replicas;
  config.Duplicates = Nanoseconds(settings.duplicate_window);
  config.MaxAge = Nanoseconds(settings.max_age);
  status = js_AddStream(&info, jetstream, &config, nullptr, &code);
  if (status == NATS_OK) {
    jsStreamInfo_Destroy(info);
    return std::string();
  }
  // Another service created it meanwhile: compare with that one.
  if (code == JSStreamNameExistErr) return EnsureStream(jetstream, settings);
  return FromJetStreamError(status, code, absl::StrCat("creating ", context));
}

absl::StatusOr<std::string> EnsureConsumer(jsCtx* jetstream, const std::string& stream,
                                           const ConsumerSettings& settings) {
  const std::string context = absl::StrCat("consumer ", settings.durable, " of stream ", stream);
  jsConsumerInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus status = js_GetConsumerInfo(&info, jetstream, stream.c_str(), settings.durable.c_str(),
                                         nullptr, &code);
  if (status == NATS_OK) {
    const jsConsumerConfig& existing = *info->Config;
    std::vector<std::string> differences;
    Compare<std::string>(differences, "filter subject",
                         existing.FilterSubject == nullptr ? "" : existing.FilterSubject,
                         settings.filter_subject);
    Compare<std::int64_t>(differences, "ack wait (ns)", existing.AckWait,
                          Nanoseconds(settings.ack_wait));
    Compare<std::int64_t>(differences, "max deliver", existing.MaxDeliver, settings.max_deliver);
    Compare<std::int64_t>(differences, "max ack pending", existing.MaxAckPending,
                          settings.max_ack_pending);
    if (existing.AckPolicy != js_AckExplicit) differences.push_back("ack policy is not explicit");
    jsConsumerInfo_Destroy(info);
    return absl::StrJoin(differences, "; ");
  }
  absl::Status looked_up = FromJetStreamError(status, code, context);
  if (!absl::IsNotFound(looked_up)) return looked_up;

  jsConsumerConfig config;
  jsConsumerConfig_Init(&config);
  config.Durable = settings.durable.c_str();
  config.FilterSubject = settings.filter_subject.c_str();
  config.AckPolicy = js_AckExplicit;
  config.DeliverPolicy = js_DeliverAll;
  config.AckWait = Nanoseconds(settings.ack_wait);
  config.MaxDeliver = settings.max_deliver;
  config.MaxAckPending = settings.max_ack_pending;
  status = js_AddConsumer(&info, jetstream, stream.c_str(), &config, nullptr, &code);
  if (status != NATS_OK)
    return FromJetStreamError(status, code, absl::StrCat("creating ", context));
  jsConsumerInfo_Destroy(info);
  return std::string();
}

}  // namespace messaging
