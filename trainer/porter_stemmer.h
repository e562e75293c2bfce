// File: trainer/porter_stemmer.h
//
// The Porter stemmer exactly as nltk 3.10.4 implements it in its default mode,
// `nltk.stem.porter.PorterStemmer()` = `PorterStemmer.NLTK_EXTENSIONS`: the
// mode Google's rouge-score 0.1.2 uses when `use_stemmer=True`. ROUGE scores
// with stemming are comparable to published ones only if every stem matches
// nltk's, so this is a line-by-line port of nltk's steps (1a, 1b, 1c, 2, 3, 4,
// 5a, 5b) with the NLTK_EXTENSIONS deviations from Porter (1980): the table
// of irregular forms (sky/skies, dying, news, ...), words of one or two
// letters left alone, `ies`/`ied` on four-letter words (dies -> die),
// `y -> i` only after a consonant that is not the first letter (happy ->
// happi, enjoy -> enjoy), `alli -> al` before `bli -> ble`, `fulli -> ful`
// and `logi -> log` in step 2, and a two-letter vowel-consonant stem counting
// as *o. nltk's other two modes (ORIGINAL_ALGORITHM, MARTIN_EXTENSIONS) are
// not implemented: nothing in memtrain asks for them.
//
//   std::string stem = memtrain::trainer::PorterStem("generalizations");  // "gener"
//
// Letters are ASCII: the word is lowercased (ASCII only) first, like nltk's
// `stem(word, to_lowercase=True)`; digits and any other byte count as
// consonants, as they do in nltk. rouge-score only ever passes lowercase
// [a-z0-9] tokens longer than three characters.
#ifndef MEMTRAIN_TRAINER_PORTER_STEMMER_H_
#define MEMTRAIN_TRAINER_PORTER_STEMMER_H_

#include <string>

#include "absl/strings/string_view.h"

namespace memtrain::trainer {

/// The nltk release whose PorterStemmer() this file reproduces.
inline constexpr char kNltkVersion[] = "3.10.4";

/// The stem nltk 3.10.4's PorterStemmer() (NLTK_EXTENSIONS) gives `word`.
std::string PorterStem(absl::string_view word);

}  // namespace memtrain::trainer

#endif  // MEMTRAIN_TRAINER_PORTER_STEMMER_H_
