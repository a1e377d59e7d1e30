// Fuzzes the tier record reader: <state-dir>/tier/<id>.json is read back at
// every gputierd start (TierRecordStore::LoadAll), whatever a crash, a full
// disk or a person left there. It must be a record or one clear error; an
// accepted record must write back and read back to the same record.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loader/tier/tier_record.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<gputier::TierRecord> record = gputier::TierRecordFromJson(text, "fuzz.json");
  if (!record.ok()) {
    if (record.status().message().empty()) std::abort();
    return 0;
  }
  const std::string json = gputier::TierRecordToJson(*record);
  absl::StatusOr<gputier::TierRecord> again = gputier::TierRecordFromJson(json, "round trip");
  if (!again.ok() || gputier::TierRecordToJson(*again) != json) std::abort();
  return 0;
}
