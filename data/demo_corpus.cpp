#include "data/demo_corpus.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/substitute.h"

namespace memtrain::data {
namespace {

constexpr int kMaxFactsPerDocument = 16;
constexpr int64_t kMaxDistanceWords = 1'000'000;

// ---- Randomness that is the same on every platform ------------------------------

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// std::mt19937_64's output is fixed by the standard, std::uniform_int_distribution's
// is not, hence Below().
class DemoRandom {
 public:
  explicit DemoRandom(uint64_t seed) : engine_(seed) {}

  /// Uniform in [0, n), n > 0.
  size_t Below(size_t n) {
    const uint64_t limit = std::mt19937_64::max() - std::mt19937_64::max() % n;
    uint64_t value;
    do {
      value = engine_();
    } while (value >= limit);
    return static_cast<size_t>(value % n);
  }

  template <typename T, size_t N>
  const T& Pick(const T (&items)[N]) {
    return items[Below(N)];
  }

 private:
  std::mt19937_64 engine_;
};

// ---- Facts ---------------------------------------------------------------------

// $0 is the entity, $1 the answer.
struct Relation {
  const char* fact;
  const char* question;  ///< ends right before the answer
};

constexpr Relation kRelations[] = {
    {"The capital of $0 is $1 .",
     "Question : what is the capital of $0 ? Answer : the capital of $0 is"},
    {"The river that flows through $0 is called $1 .",
     "Question : which river flows through $0 ? Answer : the river that flows through $0 is "
     "called"},
    {"The leader of $0 is named $1 .",
     "Question : who leads $0 ? Answer : the leader of $0 is named"},
    {"The oldest ship of $0 is named $1 .",
     "Question : what is the oldest ship of $0 called ? Answer : the oldest ship of $0 is named"},
    {"The chief export of $0 is $1 .",
     "Question : what does $0 export most ? Answer : the chief export of $0 is"},
    {"The founder of $0 was $1 .", "Question : who founded $0 ? Answer : the founder of $0 was"},
};

constexpr const char* kQuestionsIntro = "Here are questions about the facts stated at the start .";
constexpr const char* kRecallIntro = "Recall :";
constexpr const char* kRehearsalIntro = "Again :";

constexpr const char* kSyllables[] = {"ka",  "lo",  "mi",  "ra",  "ven", "dor", "qui", "stan",
                                      "bel", "tor", "nia", "zen", "fal", "mor", "thi", "ri",
                                      "sa",  "gon", "lu",  "vik", "ar",  "pel", "dra", "sto",
                                      "ny",  "wen", "cha", "bri", "ol",  "es"};

// ---- Filler ----------------------------------------------------------------------

constexpr const char* kAdjectives[] = {
    "old",  "quiet",   "small",   "bright", "heavy",   "narrow", "gentle", "distant",
    "busy", "patient", "careful", "tired",  "curious", "humble", "sudden", "warm",
    "cold", "plain",   "crowded", "empty",  "steady",  "rough",  "silver", "wooden"};
constexpr const char* kPeople[] = {"farmer",   "teacher", "merchant", "sailor", "child",
                                   "baker",    "painter", "traveler", "clerk",  "doctor",
                                   "miller",   "weaver",  "soldier",  "cook",   "student",
                                   "neighbor", "singer",  "builder",  "driver", "keeper"};
constexpr const char* kGroups[] = {"villagers", "workers",  "friends",   "visitors",  "neighbors",
                                   "students",  "families", "fishermen", "musicians", "guests"};
// Every thing takes a plural "s".
constexpr const char* kThings[] = {"basket", "lantern", "letter", "cart",   "bridge",
                                   "window", "garden",  "road",   "wall",   "bell",
                                   "table",  "fence",   "boat",   "coat",   "map",
                                   "book",   "well",    "barn",   "kettle", "ladder"};
constexpr const char* kPlaces[] = {"market",   "harbor", "village", "station", "library", "square",
                                   "mill",     "school", "orchard", "forest",  "hill",    "shore",
                                   "workshop", "inn",    "chapel",  "valley"};
constexpr const char* kVerbs[] = {"carried", "painted", "repaired", "found",   "watched", "cleaned",
                                  "moved",   "opened",  "sold",     "bought",  "counted", "visited",
                                  "built",   "mended",  "followed", "measured"};
constexpr const char* kAdverbs[] = {"slowly",  "quietly", "often", "rarely", "carefully",
                                    "quickly", "gladly",  "early", "late",   "twice"};
constexpr const char* kTimes[] = {"morning", "evening", "spring",    "autumn",
                                  "winter",  "summer",  "afternoon", "night"};
constexpr const char* kCounts[] = {"two", "three", "four",    "five",
                                   "six", "seven", "several", "many"};

constexpr const char* kFillerTemplates[] = {
    "The {adj} {person} {verb} the {thing} near the {place} .",
    "In the {time} , the {group} {verb} {count} {things} at the {place} .",
    "Every {time} a {adj} {person} walks {adv} to the {place} and back .",
    "Nobody at the {place} remembers who {verb} the {adj} {thing} .",
    "The {group} said that the {thing} by the {place} was {adj} again .",
    "A {person} and a {person} {verb} the {thing} {adv} before the {time} ended .",
    "There were {count} {adj} {things} in the {place} that {time} .",
    "When the {thing} was {adj} , the {person} {verb} it {adv} .",
    "The {place} was {adj} , so the {group} {verb} a {thing} and waited .",
    "Later that {time} the {person} {verb} {count} {things} for the {place} .",
};

// The word a "{slot}" of a filler template stands for.
std::string FillSlot(absl::string_view slot, DemoRandom& random) {
  if (slot == "{adj}") return random.Pick(kAdjectives);
  if (slot == "{person}") return random.Pick(kPeople);
  if (slot == "{group}") return random.Pick(kGroups);
  if (slot == "{thing}") return random.Pick(kThings);
  if (slot == "{things}") return absl::StrCat(random.Pick(kThings), "s");
  if (slot == "{place}") return random.Pick(kPlaces);
  if (slot == "{verb}") return random.Pick(kVerbs);
  if (slot == "{adv}") return random.Pick(kAdverbs);
  if (slot == "{time}") return random.Pick(kTimes);
  if (slot == "{count}") return random.Pick(kCounts);
  return std::string(slot);
}

// Appends one filler sentence's words to *words.
void AppendFillerSentence(DemoRandom& random, std::vector<std::string>* words) {
  for (absl::string_view part : absl::StrSplit(random.Pick(kFillerTemplates), ' ')) {
    words->push_back(FillSlot(part, random));
  }
}

// Whether `name` (lower-cased) is a word the filler or the templates could
// write, which would put an answer in the text outside its two places.
bool IsCorpusWord(const std::string& lower_name) {
  auto in_list = [&](const auto& words) {
    for (const char* word : words) {
      if (lower_name == word || lower_name == absl::StrCat(word, "s")) return true;
    }
    return false;
  };
  auto in_text = [&](absl::string_view text) {
    for (absl::string_view word : absl::StrSplit(text, ' ')) {
      if (lower_name == absl::AsciiStrToLower(word)) return true;
    }
    return false;
  };
  if (in_list(kAdjectives) || in_list(kPeople) || in_list(kGroups) || in_list(kThings) ||
      in_list(kPlaces) || in_list(kVerbs) || in_list(kAdverbs) || in_list(kTimes) ||
      in_list(kCounts) || in_text(kQuestionsIntro) || in_text(kRecallIntro) ||
      in_text(kRehearsalIntro)) {
    return true;
  }
  for (const char* text : kFillerTemplates) {
    if (in_text(text)) return true;
  }
  for (const Relation& relation : kRelations) {
    if (in_text(relation.fact) || in_text(relation.question)) return true;
  }
  return false;
}

// A capitalized name of two or three syllables, new in `taken`.
std::string NewName(DemoRandom& random, std::vector<std::string>* taken) {
  while (true) {
    std::string name;
    const size_t syllables = 2 + random.Below(2);
    for (size_t i = 0; i < syllables; ++i) name += random.Pick(kSyllables);
    if (IsCorpusWord(name)) continue;
    name[0] = absl::ascii_toupper(static_cast<unsigned char>(name[0]));
    if (std::find(taken->begin(), taken->end(), name) != taken->end()) continue;
    taken->push_back(name);
    return name;
  }
}

struct Fact {
  const Relation* relation;
  std::string entity;
  std::string answer;
};

// The recall ending: `text`, then the facts line again word for word, each
// name its own long-range segment (" Faldra"), the words between them not.
void AppendRecall(std::string text, const std::vector<Fact>& facts, Record* record) {
  auto flush = [&](std::string* pending, bool long_range) {
    TextSegment segment;
    segment.text = std::move(*pending);
    segment.long_range = long_range;
    record->source.push_back(std::move(segment));
    pending->clear();
  };
  for (const Fact& fact : facts) {
    for (absl::string_view word : absl::StrSplit(fact.relation->fact, ' ')) {
      if (word == "$0" || word == "$1") {
        flush(&text, false);
        std::string name = absl::StrCat(" ", word == "$0" ? fact.entity : fact.answer);
        flush(&name, true);
      } else {
        absl::StrAppend(&text, " ", word);
      }
    }
  }
  flush(&text, false);
}

class DemoCorpusReader : public CorpusReader {
 public:
  explicit DemoCorpusReader(const ReaderOptions& options) : options_(options) {}

  absl::StatusOr<std::optional<Record>> Next() override {
    if (next_document_ == options_.demo_documents) return std::nullopt;
    Record record = Generate(next_document_++);
    ++stats_.records;
    for (const TextSegment& segment : record.source) stats_.bytes_read += segment.text.size();
    return record;
  }

  const ReaderStats& stats() const override { return stats_; }

 private:
  // Document `index` depends only on the seed, the knobs and `index`.
  Record Generate(int64_t index) const {
    DemoRandom random(SplitMix64(SplitMix64(options_.seed) ^ static_cast<uint64_t>(index)));
    std::vector<std::string> names;
    std::vector<Fact> facts(options_.demo_facts_per_document);
    for (Fact& fact : facts) {
      fact.relation = &random.Pick(kRelations);
      fact.entity = NewName(random, &names);
      fact.answer = NewName(random, &names);
    }

    std::vector<std::string> lines;
    std::vector<std::string> fact_sentences;
    for (const Fact& fact : facts) {
      fact_sentences.push_back(absl::Substitute(fact.relation->fact, fact.entity, fact.answer));
    }
    lines.push_back(absl::StrJoin(fact_sentences, " "));
    // The recall ending's rehearsal: the same line again right away, where
    // local attention sees both. A knn layer's keys learn only from its local
    // attention (no gradient reaches the memory), so the lookup that copies
    // the line from memory later must first be useful within a segment.
    if (options_.demo_recall) lines.push_back(absl::StrCat(kRehearsalIntro, " ", lines.back()));

    // Paragraphs of 4 to 8 sentences until the filler reaches the distance.
    std::vector<std::string> words;
    int64_t filler_words = 0;
    while (filler_words < options_.demo_distance_words) {
      const size_t sentences = 4 + random.Below(5);
      for (size_t i = 0; i < sentences && filler_words < options_.demo_distance_words; ++i) {
        const size_t before = words.size();
        AppendFillerSentence(random, &words);
        filler_words += static_cast<int64_t>(words.size() - before);
      }
      lines.push_back(absl::StrJoin(words, " "));
      words.clear();
    }

    // Fisher-Yates with Below(), so the order is the same everywhere.
    std::vector<const Fact*> order;
    for (const Fact& fact : facts) order.push_back(&fact);
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[random.Below(i)]);

    Record record;
    record.where = absl::StrCat("demo document ", index, " (seed ", options_.seed, ")");
    if (options_.demo_recall) {
      AppendRecall(absl::StrCat(absl::StrJoin(lines, "\n"), "\n", kRecallIntro), facts, &record);
      return record;
    }
    std::string text = absl::StrCat(absl::StrJoin(lines, "\n"), "\n", kQuestionsIntro);
    for (const Fact* fact : order) {
      absl::StrAppend(&text, " ", absl::Substitute(fact->relation->question, fact->entity));
      TextSegment before;
      before.text = std::move(text);
      record.source.push_back(std::move(before));
      TextSegment answer;
      answer.text = absl::StrCat(" ", fact->answer);
      answer.long_range = true;
      record.source.push_back(std::move(answer));
      text = " .";
    }
    TextSegment last;
    last.text = std::move(text);
    record.source.push_back(std::move(last));
    return record;
  }

  ReaderOptions options_;
  ReaderStats stats_;
  int64_t next_document_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CorpusReader>> OpenDemoCorpusReader(const ReaderOptions& options) {
  if (!options.inputs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the demo corpus is generated and reads no "
                     "files, but inputs were given: ",
                     absl::StrJoin(options.inputs, ", ")));
  }
  if (options.demo_documents < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("demo_documents=", options.demo_documents, " must be at least 1"));
  }
  if (options.demo_facts_per_document < 1 ||
      options.demo_facts_per_document > kMaxFactsPerDocument) {
    return absl::InvalidArgumentError(
        absl::StrCat("demo_facts_per_document=", options.demo_facts_per_document,
                     " must be in [1, ", kMaxFactsPerDocument, "]"));
  }
  if (options.demo_distance_words < 0 || options.demo_distance_words > kMaxDistanceWords) {
    return absl::InvalidArgumentError(
        absl::StrCat("demo_distance_words=", options.demo_distance_words, " must be in [0, ",
                     kMaxDistanceWords, "]"));
  }
  return std::make_unique<DemoCorpusReader>(options);
}

}  // namespace memtrain::data
