//! Text normalization before synthesis: numbers, times, dates, phone numbers and a few clinic
//! abbreviations become words ("3:30 PM" -> "three thirty P M", "03/04" -> "March fourth" in the
//! US order, "fourth of March" day-first). Pure functions, no I/O.

use crate::words::{MONTHS, ONES, ORDINAL_ONES, ORDINAL_TENS, TENS};

/// Cardinal number in words ("one hundred twenty three").
pub fn cardinal(n: u64) -> String {
    match n {
        0..=19 => ONES[n as usize].to_string(),
        20..=99 => {
            let t = TENS[(n / 10) as usize];
            if n.is_multiple_of(10) {
                t.to_string()
            } else {
                format!("{t} {}", ONES[(n % 10) as usize])
            }
        }
        100..=999 => join(ONES[(n / 100) as usize], "hundred", n % 100),
        1_000..=999_999 => join(&cardinal(n / 1000), "thousand", n % 1000),
        1_000_000..=999_999_999 => join(&cardinal(n / 1_000_000), "million", n % 1_000_000),
        _ => digits(&n.to_string()),
    }
}

fn join(head: &str, unit: &str, rest: u64) -> String {
    if rest == 0 {
        format!("{head} {unit}")
    } else {
        format!("{head} {unit} {}", cardinal(rest))
    }
}

/// Ordinal in words ("twenty first").
pub fn ordinal(n: u64) -> String {
    match n {
        0..=19 => ORDINAL_ONES[n as usize].to_string(),
        20..=99 if n.is_multiple_of(10) => ORDINAL_TENS[(n / 10) as usize].to_string(),
        20..=99 => format!(
            "{} {}",
            TENS[(n / 10) as usize],
            ORDINAL_ONES[(n % 10) as usize]
        ),
        _ => {
            let c = cardinal(n);
            format!("{c}th")
        }
    }
}

/// Each digit as a word ("five five five").
pub fn digits(s: &str) -> String {
    s.chars()
        .filter_map(|c| c.to_digit(10))
        .map(|d| ONES[d as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

/// A year the way it is said ("nineteen eighty four", "twenty twenty five", "two thousand five").
pub fn year(y: u64) -> String {
    if (2000..2010).contains(&y) || !(1000..=2099).contains(&y) {
        return cardinal(y);
    }
    let (hi, lo) = (y / 100, y % 100);
    match lo {
        0 => format!("{} hundred", cardinal(hi)),
        1..=9 => format!("{} oh {}", cardinal(hi), cardinal(lo)),
        _ => format!("{} {}", cardinal(hi), cardinal(lo)),
    }
}

/// A clock time: "3:30" -> "three thirty", "10:05" -> "ten oh five", "9:00" -> "nine o'clock".
fn clock(h: u64, m: u64, has_meridiem: bool) -> String {
    let hour = cardinal(h);
    match m {
        0 if has_meridiem => hour,
        0 => format!("{hour} o'clock"),
        1..=9 => format!("{hour} oh {}", cardinal(m)),
        _ => format!("{hour} {}", cardinal(m)),
    }
}

fn meridiem(word: &str) -> Option<&'static str> {
    match word.to_ascii_lowercase().trim_end_matches(['.', ',']) {
        "am" | "a.m" => Some("A M"),
        "pm" | "p.m" => Some("P M"),
        _ => None,
    }
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        None
    } else {
        s.parse().ok()
    }
}

/// Splits trailing punctuation off a word.
fn split_punct(word: &str) -> (&str, &str) {
    let end = word
        .trim_end_matches([',', '.', ';', ':', '?', '!', ')'])
        .len();
    (&word[..end], &word[end..])
}

/// Normalizes `text` for synthesis. `day_first`: "03/04" is the 3rd of April (not March 4th).
pub fn normalize(text: &str, day_first: bool) -> String {
    let spaced = split_meridiem(text);
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        if let Some(w) = word_for(words[i], day_first) {
            // "Dr." is an abbreviation, not the end of a sentence.
            out.push(w);
            i += 1;
            continue;
        }
        let (core, punct) = split_punct(words[i]);
        let next = words.get(i + 1).copied();
        let spoken = if let Some(w) = word_for(core, day_first) {
            w
        } else if let Some((h, m)) = core
            .split_once(':')
            // "3.30 pm": whisper's British spelling, taken as a time only before am/pm.
            .or_else(|| {
                next.and_then(|n| meridiem(split_punct(n).0))
                    .and_then(|_| core.split_once('.'))
            })
            .and_then(|(h, m)| {
                let h = number(h).filter(|h| *h <= 24)?;
                let m = number(m).filter(|v| m.len() == 2 && *v < 60)?;
                Some((h, m))
            })
        {
            // "3:30 PM"
            match next.and_then(|n| meridiem(split_punct(n).0).map(|m| (m, split_punct(n).1))) {
                Some((mer, p)) if punct.is_empty() => {
                    i += 1;
                    format!("{} {mer}{p}", clock(h, m, true))
                }
                _ => clock(h, m, false),
            }
        } else if let (Some((h, m)), Some(mer)) = (
            // "330 PM", "1045 AM": whisper writes clock times without the colon.
            number(core)
                .filter(|_| (3..=4).contains(&core.len()))
                .map(|n| (n / 100, n % 100))
                .filter(|(h, m)| (1..=12).contains(h) && *m < 60),
            next.and_then(|n| meridiem(split_punct(n).0)),
        ) {
            let p = split_punct(next.unwrap_or_default()).1;
            i += 1;
            format!("{} {mer}{p}", clock(h, m, true))
        } else if let (Some(n), Some(mer)) = (
            number(core).filter(|n| (1..=12).contains(n)),
            next.and_then(|n| meridiem(split_punct(n).0)),
        ) {
            // "3 PM"
            let p = split_punct(next.unwrap_or_default()).1;
            i += 1;
            format!("{} {mer}{p}", cardinal(n))
        } else if let Some(n) = number(core) {
            if core.len() == 4 && (1900..=2099).contains(&n) {
                year(n)
            } else if core.len() > 1 && core.starts_with('0') {
                digits(core)
            } else {
                cardinal(n)
            }
        } else if let Some(w) = ordinal_word(core) {
            w
        } else if let Some(w) = date(core, day_first) {
            w
        } else if let Some(w) = phone(core) {
            w
        } else {
            core.to_string()
        };
        out.push(format!("{spoken}{punct}"));
        i += 1;
    }
    out.join(" ")
}

/// "3:30pm" / "3.30pm" / "3pm" -> "3:30 pm" / "3:30 pm" / "3 pm" (how recognizers write times).
fn split_meridiem(text: &str) -> String {
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        let (core, punct) = split_punct(word);
        let lower = core.to_ascii_lowercase();
        let split = ["am", "pm", "a.m", "p.m"].iter().find_map(|m| {
            let head = lower.strip_suffix(m)?;
            let clock = head.replace('.', ":");
            let ok = !head.is_empty()
                && head
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b':' || b == b'.')
                && head.bytes().next().is_some_and(|b| b.is_ascii_digit());
            ok.then(|| format!("{clock} {}", &core[head.len()..]))
        });
        match split {
            Some(s) => out.push(format!("{s}{punct}")),
            None => out.push(word.to_string()),
        }
    }
    out.join(" ")
}

fn word_for(core: &str, _day_first: bool) -> Option<String> {
    let w = match core {
        "Dr" | "Dr." => "Doctor",
        "Mr" | "Mr." => "Mister",
        "Mrs" | "Mrs." => "Missus",
        "St" => "Street",
        "&" => "and",
        "%" => "percent",
        _ => return None,
    };
    Some(w.to_string())
}

/// "1st", "22nd", "3rd", "4th".
fn ordinal_word(core: &str) -> Option<String> {
    let lower = core.to_ascii_lowercase();
    for suffix in ["st", "nd", "rd", "th"] {
        if let Some(n) = lower.strip_suffix(suffix).and_then(number) {
            return Some(ordinal(n));
        }
    }
    None
}

/// "555-123-4567", "(555)123-4567", "555.123.4567", "123-4567": digits in groups.
fn phone(core: &str) -> Option<String> {
    let cleaned = core.trim_start_matches('(');
    let groups: Vec<&str> = cleaned
        .split(['-', '.', ')'])
        .filter(|g| !g.is_empty())
        .collect();
    let all_digits = groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()));
    let total: usize = groups.iter().map(|g| g.len()).sum();
    if groups.len() >= 2 && all_digits && (7..=11).contains(&total) {
        Some(
            groups
                .iter()
                .map(|g| digits(g))
                .collect::<Vec<_>>()
                .join(", "),
        )
    } else {
        None
    }
}

/// "03/04", "3/4/2025", "2025-03-04".
fn date(core: &str, day_first: bool) -> Option<String> {
    let (m, d, y) = if let Some((y, rest)) = core.split_once('-') {
        let (m, d) = rest.split_once('-')?;
        if y.len() != 4 {
            return None;
        }
        (number(m)?, number(d)?, Some(number(y)?))
    } else {
        let parts: Vec<&str> = core.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return None;
        }
        let a = number(parts[0])?;
        let b = number(parts[1])?;
        let y = match parts.get(2) {
            Some(y) if y.len() == 2 => Some(2000 + number(y)?),
            Some(y) => Some(number(y)?),
            None => None,
        };
        if day_first { (b, a, y) } else { (a, b, y) }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let month = MONTHS[(m - 1) as usize];
    let mut s = if day_first {
        format!("the {} of {month}", ordinal(d))
    } else {
        format!("{month} {}", ordinal(d))
    };
    if let Some(y) = y {
        s.push_str(&format!(", {}", year(y)));
    }
    Some(s)
}

/// Splits text into sentences (at `.`, `?`, `!` followed by a space or the end), keeping the
/// punctuation.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        current.push(c);
        let end =
            matches!(c, '.' | '?' | '!') && chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        if end {
            let s = current.trim().to_string();
            if !s.is_empty() {
                out.push(s);
            }
            current.clear();
        }
    }
    let s = current.trim().to_string();
    if !s.is_empty() {
        out.push(s);
    }
    out
}

/// A piece of speech to synthesize in one go, and whether it ends a sentence (a longer pause
/// follows) or a clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    pub ends_sentence: bool,
}

/// Fewest words before and after a clause break for the first sentence to be split there.
const MIN_HEAD_WORDS: usize = 3;
const MIN_TAIL_WORDS: usize = 4;

/// `text`'s sentences as pieces to synthesize, the first one split at its first clause break
/// (", " or "; ") when there are enough words on both sides. The voice makes a
/// piece in one go, so the first piece's synthesis time is how long the caller waits for the
/// reply's first sound; a clause takes about half as long as its sentence, and the rest is made
/// while the first clause plays.
pub fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    for (i, sentence) in sentences(text).into_iter().enumerate() {
        if i == 0
            && let Some((head, tail)) = clause_split(&sentence)
        {
            out.push(Piece {
                text: head.to_string(),
                ends_sentence: false,
            });
            out.push(Piece {
                text: tail.to_string(),
                ends_sentence: true,
            });
            continue;
        }
        out.push(Piece {
            text: sentence,
            ends_sentence: true,
        });
    }
    out
}

/// The first clause break of `sentence` with enough words on both sides: (head with its comma,
/// tail).
fn clause_split(sentence: &str) -> Option<(&str, &str)> {
    let words = |s: &str| s.split_whitespace().count();
    if words(sentence) < MIN_HEAD_WORDS + MIN_TAIL_WORDS {
        return None;
    }
    sentence
        .match_indices([',', ';'])
        .map(|(at, _)| at + 1)
        .filter(|&end| sentence[end..].starts_with(' '))
        .map(|end| (&sentence[..end], sentence[end..].trim_start()))
        .find(|(head, tail)| words(head) >= MIN_HEAD_WORDS && words(tail) >= MIN_TAIL_WORDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(normalize("3:30 PM", false), "three thirty P M");
        assert_eq!(normalize("at 10:05 am.", false), "at ten oh five A M.");
        assert_eq!(normalize("9:00", false), "nine o'clock");
        assert_eq!(normalize("at 3.30pm.", false), "at three thirty P M.");
        assert_eq!(normalize("8am", false), "eight A M");
        assert_eq!(
            normalize("Come at 3 pm, please", false),
            "Come at three P M, please"
        );
    }

    #[test]
    fn dates_follow_the_locale() {
        assert_eq!(normalize("03/04", false), "March fourth");
        assert_eq!(normalize("03/04", true), "the third of April");
        assert_eq!(
            normalize("born 7/21/1984.", false),
            "born July twenty first, nineteen eighty four."
        );
        assert_eq!(
            normalize("2025-12-01", false),
            "December first, twenty twenty five"
        );
        assert_eq!(normalize("13/40", false), "13/40");
    }

    #[test]
    fn clock_times_without_colon() {
        assert_eq!(
            normalize("at 330 PM", false),
            normalize("at 3:30 PM", false)
        );
        assert_eq!(normalize("1045 am.", false), normalize("10:45 am.", false));
        assert_ne!(normalize("1999 pm", false), normalize("19:99 pm", false));
        assert_eq!(
            normalize("at 3.30 pm.", false),
            normalize("at 3:30 PM.", false)
        );
        assert_eq!(normalize("3.5 miles", false), "3.5 miles");
    }

    #[test]
    fn numbers_and_phones() {
        assert_eq!(cardinal(0), "zero");
        assert_eq!(cardinal(115), "one hundred fifteen");
        assert_eq!(cardinal(2_340), "two thousand three hundred forty");
        assert_eq!(year(2005), "two thousand five");
        assert_eq!(year(1900), "nineteen hundred");
        assert_eq!(normalize("room 42", false), "room forty two");
        assert_eq!(normalize("the 3rd floor", false), "the third floor");
        assert_eq!(
            normalize("call 555-123-4567.", false),
            "call five five five, one two three, four five six seven."
        );
        assert_eq!(normalize("Dr. Okafor", false), "Doctor Okafor");
        assert_eq!(normalize("", false), "");
    }

    #[test]
    fn sentence_split() {
        assert_eq!(
            sentences("Hello there. Is 3.5 ok? Yes!  "),
            vec!["Hello there.", "Is 3.5 ok?", "Yes!"]
        );
        assert!(sentences("   ").is_empty());
    }

    #[test]
    fn the_first_long_sentence_is_split_at_a_clause() {
        let p = pieces(
            "I can book you for Tuesday, November twenty fourth at three P M with Doctor Patel. \
             Shall I book it, or would you like another time?",
        );
        let texts: Vec<_> = p
            .iter()
            .map(|p| (p.text.as_str(), p.ends_sentence))
            .collect();
        assert_eq!(
            texts,
            [
                ("I can book you for Tuesday,", false),
                (
                    "November twenty fourth at three P M with Doctor Patel.",
                    true
                ),
                ("Shall I book it, or would you like another time?", true),
            ]
        );
        // Short sides stay whole: "Thank you, Anna." and a comma in the first words.
        assert_eq!(pieces("Thank you, Anna. Next.").len(), 2);
        assert_eq!(
            pieces("I have Tuesday, December first at two P M with Doctor Alvarez.")[0].text,
            "I have Tuesday,"
        );
        assert_eq!(
            pieces("Yes, I can move your appointment to Friday morning.").len(),
            1
        );
        assert_eq!(
            pieces("Okay,then this one has no space after its comma.").len(),
            1
        );
        assert!(pieces("").is_empty());
    }
}
