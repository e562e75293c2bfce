#include "trainer/porter_stemmer.h"

#include <initializer_list>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace memtrain::trainer {
namespace {

// The function names follow nltk/stem/porter.py (_step1a, _measure,
// _ends_cvc, ...) so the two can be read side by side.

bool IsVowelLetter(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

// A 'y' is a consonant at the start of a word and after a vowel, a vowel
// after a consonant; every other non-vowel (digits included) is a consonant.
// `previous_is_consonant` is about word[k - 1] and ignored for k == 0.
bool IsConsonantAt(char c, size_t k, bool previous_is_consonant) {
  if (IsVowelLetter(c)) return false;
  if (c == 'y') return k == 0 || !previous_is_consonant;
  return true;
}

// One left-to-right pass, so a long run of 'y's costs linear time.
bool IsConsonant(absl::string_view word, size_t i) {
  bool consonant = false;
  for (size_t k = 0; k <= i; ++k) consonant = IsConsonantAt(word[k], k, consonant);
  return consonant;
}

// m in [C](VC){m}[V]: the number of vowel-to-consonant transitions.
int Measure(absl::string_view stem) {
  int measure = 0;
  bool consonant = false;
  for (size_t k = 0; k < stem.size(); ++k) {
    const bool previous_is_vowel = k > 0 && !consonant;
    consonant = IsConsonantAt(stem[k], k, consonant);
    if (consonant && previous_is_vowel) ++measure;
  }
  return measure;
}

bool HasPositiveMeasure(absl::string_view stem) { return Measure(stem) > 0; }
bool MeasureAboveOne(absl::string_view stem) { return Measure(stem) > 1; }

bool ContainsVowel(absl::string_view stem) {
  bool consonant = false;
  for (size_t k = 0; k < stem.size(); ++k) {
    consonant = IsConsonantAt(stem[k], k, consonant);
    if (!consonant) return true;
  }
  return false;
}

// *d: ends with a double consonant.
bool EndsDoubleConsonant(absl::string_view word) {
  const size_t n = word.size();
  return n >= 2 && word[n - 1] == word[n - 2] && IsConsonant(word, n - 1);
}

// *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK_EXTENSIONS
// also accepts a two-letter word vowel-consonant.
bool EndsCvc(absl::string_view word) {
  const size_t n = word.size();
  const char last = n > 0 ? word[n - 1] : '\0';
  return (n >= 3 && IsConsonant(word, n - 3) && !IsConsonant(word, n - 2) &&
          IsConsonant(word, n - 1) && last != 'w' && last != 'x' && last != 'y') ||
         (n == 2 && !IsConsonant(word, 0) && IsConsonant(word, 1));
}

// One suffix rule: replace `suffix` by `replacement` when `condition` (null:
// always) holds for the word without the suffix.
struct Rule {
  absl::string_view suffix;
  absl::string_view replacement;
  bool (*condition)(absl::string_view stem);
};

// nltk's _apply_rule_list: only the first rule whose suffix matches is
// considered; if its condition fails the word is returned unchanged.
std::string ApplyRuleList(std::string word, std::initializer_list<Rule> rules) {
  for (const Rule& rule : rules) {
    if (!absl::EndsWith(word, rule.suffix)) continue;
    const absl::string_view stem =
        absl::string_view(word).substr(0, word.size() - rule.suffix.size());
    if (rule.condition != nullptr && !rule.condition(stem)) return word;
    return absl::StrCat(stem, rule.replacement);
  }
  return word;
}

std::string ReplaceSuffix(absl::string_view word, absl::string_view suffix,
                          absl::string_view replacement) {
  return absl::StrCat(word.substr(0, word.size() - suffix.size()), replacement);
}

std::string Step1a(std::string word) {
  // NLTK: 'dies' -> 'die' (but 'flies' -> 'fli').
  if (absl::EndsWith(word, "ies") && word.size() == 4) return ReplaceSuffix(word, "ies", "ie");
  return ApplyRuleList(
      std::move(word),
      {{"sses", "ss", nullptr}, {"ies", "i", nullptr}, {"ss", "ss", nullptr}, {"s", "", nullptr}});
}

std::string Step1b(std::string word) {
  // NLTK: 'died' -> 'die', 'spied' -> 'spi'.
  if (absl::EndsWith(word, "ied")) {
    return ReplaceSuffix(word, "ied", word.size() == 4 ? "ie" : "i");
  }
  if (absl::EndsWith(word, "eed")) {
    const absl::string_view stem = absl::string_view(word).substr(0, word.size() - 3);
    return Measure(stem) > 0 ? absl::StrCat(stem, "ee") : word;
  }
  std::string stem;
  bool ed_or_ing_removed = false;
  for (absl::string_view suffix : {"ed", "ing"}) {
    if (!absl::EndsWith(word, suffix)) continue;
    stem = word.substr(0, word.size() - suffix.size());
    if (ContainsVowel(stem)) {
      ed_or_ing_removed = true;
      break;
    }
  }
  if (!ed_or_ing_removed) return word;

  // nltk's rule list after (*v*) ED / ING, first matching rule only.
  for (absl::string_view suffix : {"at", "bl", "iz"}) {
    if (absl::EndsWith(stem, suffix)) return absl::StrCat(stem, "e");  // at -> ate, ...
  }
  if (EndsDoubleConsonant(stem)) {
    const char last = stem.back();
    if (last != 'l' && last != 's' && last != 'z') stem.pop_back();  // hopp -> hop
    return stem;
  }
  if (Measure(stem) == 1 && EndsCvc(stem)) stem += 'e';  // fil -> file
  return stem;
}

std::string Step1c(std::string word) {
  // NLTK: y -> i only after a consonant that is not the whole stem.
  return ApplyRuleList(std::move(word), {{"y", "i", [](absl::string_view stem) {
                                            return stem.size() > 1 &&
                                                   IsConsonant(stem, stem.size() - 1);
                                          }}});
}

std::string Step2(std::string word) {
  // NLTK applies ALLI -> AL first and runs step 2 again on the result.
  if (absl::EndsWith(word, "alli") &&
      HasPositiveMeasure(absl::string_view(word).substr(0, word.size() - 4))) {
    return Step2(ReplaceSuffix(word, "alli", "al"));
  }
  return ApplyRuleList(std::move(word),
                       {{"ational", "ate", HasPositiveMeasure},
                        {"tional", "tion", HasPositiveMeasure},
                        {"enci", "ence", HasPositiveMeasure},
                        {"anci", "ance", HasPositiveMeasure},
                        {"izer", "ize", HasPositiveMeasure},
                        {"bli", "ble", HasPositiveMeasure},
                        {"alli", "al", HasPositiveMeasure},
                        {"entli", "ent", HasPositiveMeasure},
                        {"eli", "e", HasPositiveMeasure},
                        {"ousli", "ous", HasPositiveMeasure},
                        {"ization", "ize", HasPositiveMeasure},
                        {"ation", "ate", HasPositiveMeasure},
                        {"ator", "ate", HasPositiveMeasure},
                        {"alism", "al", HasPositiveMeasure},
                        {"iveness", "ive", HasPositiveMeasure},
                        {"fulness", "ful", HasPositiveMeasure},
                        {"ousness", "ous", HasPositiveMeasure},
                        {"aliti", "al", HasPositiveMeasure},
                        {"iviti", "ive", HasPositiveMeasure},
                        {"biliti", "ble", HasPositiveMeasure},
                        {"fulli", "ful", HasPositiveMeasure},
                        // The 'l' of 'logi' counts with the stem, so 'geo'+'logi' qualifies.
                        {"logi", "log", [](absl::string_view stem) {
                           return HasPositiveMeasure(absl::StrCat(stem, "l"));
                         }}});
}

std::string Step3(std::string word) {
  return ApplyRuleList(std::move(word), {{"icate", "ic", HasPositiveMeasure},
                                         {"ative", "", HasPositiveMeasure},
                                         {"alize", "al", HasPositiveMeasure},
                                         {"iciti", "ic", HasPositiveMeasure},
                                         {"ical", "ic", HasPositiveMeasure},
                                         {"ful", "", HasPositiveMeasure},
                                         {"ness", "", HasPositiveMeasure}});
}

std::string Step4(std::string word) {
  return ApplyRuleList(std::move(word), {{"al", "", MeasureAboveOne},
                                         {"ance", "", MeasureAboveOne},
                                         {"ence", "", MeasureAboveOne},
                                         {"er", "", MeasureAboveOne},
                                         {"ic", "", MeasureAboveOne},
                                         {"able", "", MeasureAboveOne},
                                         {"ible", "", MeasureAboveOne},
                                         {"ant", "", MeasureAboveOne},
                                         {"ement", "", MeasureAboveOne},
                                         {"ment", "", MeasureAboveOne},
                                         {"ent", "", MeasureAboveOne},
                                         {"ion", "",
                                          [](absl::string_view stem) {
                                            return Measure(stem) > 1 &&
                                                   (stem.back() == 's' || stem.back() == 't');
                                          }},
                                         {"ou", "", MeasureAboveOne},
                                         {"ism", "", MeasureAboveOne},
                                         {"ate", "", MeasureAboveOne},
                                         {"iti", "", MeasureAboveOne},
                                         {"ous", "", MeasureAboveOne},
                                         {"ive", "", MeasureAboveOne},
                                         {"ize", "", MeasureAboveOne}});
}

std::string Step5a(std::string word) {
  // Both conditions are tried for the one suffix (nltk explains why this step
  // cannot use the rule list).
  if (absl::EndsWith(word, "e")) {
    const absl::string_view stem = absl::string_view(word).substr(0, word.size() - 1);
    const int measure = Measure(stem);
    if (measure > 1 || (measure == 1 && !EndsCvc(stem))) return std::string(stem);
  }
  return word;
}

std::string Step5b(std::string word) {
  // (m > 1 and *d and *L): the measure is taken with one 'l' left on.
  return ApplyRuleList(std::move(word), {{"ll", "l", [](absl::string_view stem) {
                                            return MeasureAboveOne(absl::StrCat(stem, "l"));
                                          }}});
}

// NLTK_EXTENSIONS' irregular forms, checked before any step.
absl::string_view IrregularStem(absl::string_view word) {
  struct Irregular {
    absl::string_view word, stem;
  };
  static constexpr Irregular kIrregular[] = {
      {"sky", "sky"},         {"skies", "sky"},        {"dying", "die"},
      {"lying", "lie"},       {"tying", "tie"},        {"news", "news"},
      {"innings", "inning"},  {"inning", "inning"},    {"outings", "outing"},
      {"outing", "outing"},   {"cannings", "canning"}, {"canning", "canning"},
      {"howe", "howe"},       {"proceed", "proceed"},  {"exceed", "exceed"},
      {"succeed", "succeed"},
  };
  for (const Irregular& irregular : kIrregular) {
    if (irregular.word == word) return irregular.stem;
  }
  return {};
}

}  // namespace

std::string PorterStem(absl::string_view word) {
  std::string stem = absl::AsciiStrToLower(word);
  if (absl::string_view irregular = IrregularStem(stem); !irregular.empty()) {
    return std::string(irregular);
  }
  if (word.size() <= 2) return stem;
  stem = Step1a(std::move(stem));
  stem = Step1b(std::move(stem));
  stem = Step1c(std::move(stem));
  stem = Step2(std::move(stem));
  stem = Step3(std::move(stem));
  stem = Step4(std::move(stem));
  stem = Step5a(std::move(stem));
  return Step5b(std::move(stem));
}

}  // namespace memtrain::trainer
