//! Deterministic parsers for what must be exact: spoken dates of birth, relative dates and times,
//! phone numbers, spelled names, yes/no, digits. Input is a final ASR transcript (any case, with or
//! without punctuation, numbers as words or digits); output is a value or `None`, never a guess.

use jiff::civil::{Date, Time, Weekday};

use crate::words;

/// Lower-cases, splits hyphens and slashes around words, and drops punctuation that ASR adds
/// (keeps `/`, `:` and `-` between digits for written dates and times).
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let prev_digit = i > 0 && chars[i - 1].is_ascii_digit();
        let next_digit = chars.get(i + 1).is_some_and(|c| c.is_ascii_digit());
        match c {
            'a'..='z' | '0'..='9' | ' ' => out.push(c),
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            '\'' | '\u{2019}' => out.push('\''),
            '/' | ':' | '-' | '.' if prev_digit && next_digit => out.push(c),
            _ => out.push(' '),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn words(text: &str) -> Vec<String> {
    normalize(text)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

fn unit(w: &str) -> Option<u32> {
    match w {
        // "oh three": zero as the recognizer writes it in digit strings.
        "oh" | "o" => Some(0),
        _ => words::value_in(&words::ONES, 0..10, w),
    }
}

fn teen(w: &str) -> Option<u32> {
    words::value_in(&words::ONES, 10..20, w)
}

fn tens(w: &str) -> Option<u32> {
    match w {
        "fourty" => Some(40),
        _ => words::value_in(&words::TENS, 2..10, w).map(|t| t * 10),
    }
}

fn ordinal_word(w: &str) -> Option<u32> {
    // Ordinal tens only up to "thirtieth": they are days of the month here.
    words::value_in(&words::ORDINAL_ONES, 1..20, w)
        .or_else(|| words::value_in(&words::ORDINAL_TENS, 2..4, w).map(|t| t * 10))
}

/// `3rd`, `21st`, `2nd`, `4th` -> the number.
/// A day of the month written as a Roman numeral ("iii"), as the recognizer sometimes writes
/// an ordinal after a month.
fn roman_day(w: &str) -> Option<u32> {
    if w.is_empty() || w.len() > 6 || !w.bytes().all(|b| matches!(b, b'i' | b'v' | b'x')) {
        return None;
    }
    let value = |b: u8| match b {
        b'i' => 1,
        b'v' => 5,
        _ => 10,
    };
    let bytes = w.as_bytes();
    let mut total = 0i32;
    for (k, &b) in bytes.iter().enumerate() {
        let v = value(b);
        match bytes.get(k + 1) {
            Some(&n) if value(n) > v => total -= v,
            _ => total += v,
        }
    }
    let total = u32::try_from(total).ok()?;
    // Only the canonical spelling, so "iiii" or "vx" are not days.
    let canonical = |mut n: u32| {
        let mut out = String::new();
        for (v, r) in [(10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")] {
            while n >= v {
                out.push_str(r);
                n -= v;
            }
        }
        out
    };
    ((1..=31).contains(&total) && canonical(total) == w).then_some(total)
}

fn ordinal_digits(w: &str) -> Option<u32> {
    for suffix in ["st", "nd", "rd", "th"] {
        if let Some(n) = w.strip_suffix(suffix)
            && !n.is_empty()
            && n.len() <= 2
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            return n.parse().ok();
        }
    }
    None
}

pub fn month(w: &str) -> Option<i8> {
    words::month_number(w).or(match w {
        "jan" => Some(1),
        "feb" | "febuary" => Some(2),
        "mar" => Some(3),
        "apr" => Some(4),
        "jun" => Some(6),
        "jul" => Some(7),
        "aug" => Some(8),
        "sept" | "sep" => Some(9),
        "oct" => Some(10),
        "nov" => Some(11),
        "dec" => Some(12),
        _ => None,
    })
}

/// A piece of a spoken number sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Digits as said: "oh three" -> "03", "seventy five" -> "75", "1975" -> "1975".
    Num(String),
    /// "third", "3rd".
    Ord(u32),
    Month(i8),
    Word(String),
}

/// Groups number words the way people say them in dates and phone numbers.
fn tokenize_numbers(text: &str) -> Vec<Tok> {
    let ws = words(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < ws.len() {
        let w = ws[i].as_str();
        let next = ws.get(i + 1).map(String::as_str);
        let after_month = matches!(out.last(), Some(Tok::Month(_)));
        if let Some(m) = month(w) {
            out.push(Tok::Month(m));
            i += 1;
        } else if w == "mark"
            && next.is_some_and(|n| {
                ordinal_digits(n).is_some()
                    || ordinal_word(n).is_some()
                    || roman_day(n).is_some()
                    || n.bytes().all(|b| b.is_ascii_digit())
            })
        {
            // The recognizer hears "March third" as "Mark III" now and then.
            out.push(Tok::Month(3));
            i += 1;
        } else if let Some(d) = roman_day(w).filter(|_| after_month) {
            out.push(Tok::Ord(d));
            i += 1;
        } else if let Some(o) = ordinal_digits(w) {
            out.push(Tok::Ord(o));
            i += 1;
        } else if w.bytes().all(|b| b.is_ascii_digit()) {
            out.push(Tok::Num(w.to_string()));
            i += 1;
        } else if let Some(o) = ordinal_word(w) {
            out.push(Tok::Ord(o));
            i += 1;
        } else if let Some(t) = tens(w) {
            // "twenty first" -> ordinal 21; "seventy five" -> 75; "twenty" -> 20
            if let Some(o) = next.and_then(ordinal_word).filter(|o| *o < 10) {
                out.push(Tok::Ord(t + o));
                i += 2;
            } else if let Some(u) = next
                .and_then(unit)
                .filter(|u| *u > 0)
                .filter(|_| ws.get(i + 2).map(String::as_str) != Some("thousand"))
            {
                out.push(Tok::Num((t + u).to_string()));
                i += 2;
            } else {
                out.push(Tok::Num(t.to_string()));
                i += 1;
            }
        } else if let Some(t) = teen(w) {
            if next == Some("hundred") {
                // "nineteen hundred" -> 19 then 00
                out.push(Tok::Num(t.to_string()));
                out.push(Tok::Num("00".into()));
                i += 2;
            } else {
                out.push(Tok::Num(t.to_string()));
                i += 1;
            }
        } else if let Some(u) = unit(w) {
            if next == Some("thousand") {
                // "two thousand [and] five" / "two thousand twelve"
                let mut j = i + 2;
                if ws.get(j).map(String::as_str) == Some("and") {
                    j += 1;
                }
                let rest = ws.get(j).map(String::as_str);
                let (add, used) = if let Some(t) = rest.and_then(tens) {
                    match ws.get(j + 1).map(String::as_str).and_then(unit) {
                        Some(u2) if u2 > 0 => (t + u2, j + 2),
                        _ => (t, j + 1),
                    }
                } else if let Some(t) = rest.and_then(teen) {
                    (t, j + 1)
                } else if let Some(u2) = rest.and_then(unit).filter(|u| *u > 0) {
                    (u2, j + 1)
                } else {
                    (0, i + 2)
                };
                out.push(Tok::Num((u * 1000 + add).to_string()));
                i = used;
            } else if u == 0 && w != "zero" {
                // "oh five" -> "05"
                match next.and_then(unit) {
                    Some(u2) => {
                        out.push(Tok::Num(format!("0{u2}")));
                        i += 2;
                    }
                    None => {
                        out.push(Tok::Num("0".into()));
                        i += 1;
                    }
                }
            } else {
                out.push(Tok::Num(u.to_string()));
                i += 1;
            }
        } else if (w == "double" || w == "triple") && next.and_then(unit).is_some() {
            let u = next.and_then(unit).unwrap_or(0);
            let n = if w == "double" { 2 } else { 3 };
            out.push(Tok::Num(u.to_string().repeat(n)));
            i += 2;
        } else if w.contains('/') || w.contains('-') || w.contains('.') {
            for part in w.split(['/', '-', '.']) {
                if !part.is_empty() {
                    out.push(Tok::Num(part.to_string()));
                }
            }
            i += 1;
        } else {
            out.push(Tok::Word(w.to_string()));
            i += 1;
        }
    }
    out
}

fn pivot_year(two: u32, today: Date) -> i16 {
    let this = (today.year() % 100) as u32;
    if two <= this {
        (2000 + two) as i16
    } else {
        (1900 + two) as i16
    }
}

/// A year from the number groups after month and day: `[1975]`, `[19, 75]`, `[75]`, `[2005]`,
/// `[20, 05]`.
fn year_from(nums: &[String], today: Date) -> Option<i16> {
    let joined: String = nums.concat();
    match (nums.len(), joined.len()) {
        (1, 4) | (2, 4) => joined.parse().ok(),
        (1, 2) => joined.parse().ok().map(|y| pivot_year(y, today)),
        (3, 4) => joined.parse().ok(),
        _ => None,
    }
}

fn make_date(y: i16, m: i8, d: i8) -> Option<Date> {
    Date::new(y, m, d).ok()
}

/// A spoken or written date of birth. `today` rejects future dates and resolves two-digit years.
pub fn date_of_birth(text: &str, today: Date) -> Option<Date> {
    let toks = tokenize_numbers(text);
    let date = dob_from_tokens(&toks, today)?;
    (date <= today && date.year() >= today.year() - 130).then_some(date)
}

fn dob_from_tokens(toks: &[Tok], today: Date) -> Option<Date> {
    let month_at = toks.iter().position(|t| matches!(t, Tok::Month(_)));
    if let Some(mi) = month_at {
        let Tok::Month(m) = toks[mi] else {
            return None;
        };
        // the day: the first ordinal or small number after the month, else before it ("the third of March")
        let after: Vec<&Tok> = toks[mi + 1..]
            .iter()
            .filter(|t| !matches!(t, Tok::Word(_)))
            .collect();
        let before: Vec<&Tok> = toks[..mi]
            .iter()
            .filter(|t| !matches!(t, Tok::Word(_)))
            .collect();
        let day_of = |t: &Tok| -> Option<u32> {
            match t {
                Tok::Ord(d) => Some(*d),
                Tok::Num(n) if n.len() <= 2 => n.parse().ok().filter(|d| (1..=31).contains(d)),
                _ => None,
            }
        };
        let (day, year_toks): (u32, Vec<&Tok>) = match before.last().and_then(|t| day_of(t)) {
            Some(d) => (d, after),
            None => {
                let d = after.first().and_then(|t| day_of(t))?;
                (d, after[1..].to_vec())
            }
        };
        let nums: Vec<String> = year_toks
            .iter()
            .map(|t| match t {
                Tok::Num(n) => Some(n.clone()),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let year = year_from(&nums, today)?;
        return make_date(year, m, day as i8);
    }
    // no month name: numbers only
    let nums: Vec<String> = toks
        .iter()
        .filter_map(|t| match t {
            Tok::Num(n) => Some(n.clone()),
            Tok::Ord(o) => Some(o.to_string()),
            _ => None,
        })
        .collect();
    if nums.is_empty() {
        return None;
    }
    // ISO: 1975-03-03
    if nums.len() == 3 && nums[0].len() == 4 {
        return make_date(
            nums[0].parse().ok()?,
            nums[1].parse().ok()?,
            nums[2].parse().ok()?,
        );
    }
    // grouped: month, day, then the year in one to three groups
    if nums.len() >= 3 && nums[0].len() <= 2 && nums[1].len() <= 2 {
        let m: i8 = nums[0].parse().ok()?;
        let d: i8 = nums[1].parse().ok()?;
        if let Some(y) = year_from(&nums[2..], today)
            && let Some(date) = make_date(y, m, d)
        {
            return Some(date);
        }
    }
    // a digit run: MMDDYYYY or MMDDYY
    let all: String = nums.concat();
    if all.bytes().all(|b| b.is_ascii_digit()) {
        match all.len() {
            8 => {
                return make_date(
                    all[4..8].parse().ok()?,
                    all[0..2].parse().ok()?,
                    all[2..4].parse().ok()?,
                );
            }
            6 => {
                return make_date(
                    pivot_year(all[4..6].parse().ok()?, today),
                    all[0..2].parse().ok()?,
                    all[2..4].parse().ok()?,
                );
            }
            _ => {}
        }
    }
    None
}

/// A phone number as 10 digits (a leading country code 1 dropped), from digits or words.
pub fn phone(text: &str) -> Option<String> {
    let toks = tokenize_numbers(text);
    let mut digits = String::new();
    for t in &toks {
        match t {
            Tok::Num(n) => digits.push_str(n),
            Tok::Word(w) if matches!(w.as_str(), "hundred") => digits.push_str("00"),
            Tok::Word(w) if w == "thousand" => digits.push_str("000"),
            _ => {}
        }
    }
    if digits.len() == 11 && digits.starts_with('1') {
        digits.remove(0);
    }
    (digits.len() == 10).then_some(digits)
}

/// Digits said one by one or written ("one two three", "123", "double five").
pub fn digits(text: &str) -> Option<String> {
    let mut out = String::new();
    for t in tokenize_numbers(text) {
        match t {
            Tok::Num(n) => out.push_str(&n),
            Tok::Word(_) => {}
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The caller's answer to a yes/no question.
pub fn yes_no(text: &str) -> Option<bool> {
    let n = normalize(text);
    let ws: Vec<&str> = n.split(' ').collect();
    const NO_PHRASES: &[&str] = &[
        "not really",
        "that's wrong",
        "that is wrong",
        "not right",
        "not correct",
        "that's not",
        "that is not",
        "don't",
        "do not",
        "i'm good thanks",
        "i'm all set",
        "all set",
        "that's all",
        "that's it",
        "nothing else",
    ];
    const YES_PHRASES: &[&str] = &[
        "that's right",
        "that is right",
        "that's correct",
        "that is correct",
        "go ahead",
        "please do",
        "sounds good",
        "works for me",
        "that works",
        "uh huh",
        "mm hmm",
        "of course",
        "i do",
        "i would",
        "yes please",
    ];
    let padded = format!(" {n} ");
    let has = |p: &str| padded.contains(&format!(" {p} "));
    let no = ws.iter().any(|w| {
        matches!(
            *w,
            "no" | "nope" | "nah" | "negative" | "incorrect" | "wrong" | "never"
        )
    }) || NO_PHRASES.iter().any(|p| has(p));
    let yes = ws.iter().any(|w| {
        matches!(
            *w,
            "yes"
                | "yeah"
                | "yep"
                | "yup"
                | "ya"
                | "yea"
                | "sure"
                | "correct"
                | "right"
                | "ok"
                | "okay"
                | "absolutely"
                | "definitely"
                | "affirmative"
                | "perfect"
                | "great"
                | "fine"
                | "exactly"
                | "certainly"
                | "alright"
        )
    }) || YES_PHRASES.iter().any(|p| has(p));
    match (yes, no) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        // "no that's right" is ambiguous; "yes ... not" too: the first word decides
        (true, true) => {
            let first_yes = ws.iter().position(|w| {
                matches!(
                    *w,
                    "yes" | "yeah" | "yep" | "yup" | "sure" | "correct" | "right" | "ok" | "okay"
                )
            });
            let first_no = ws
                .iter()
                .position(|w| matches!(*w, "no" | "nope" | "nah" | "wrong" | "not" | "don't"));
            match (first_yes, first_no) {
                (Some(y), Some(n)) if y < n && !has("not right") && !has("not correct") => {
                    Some(true)
                }
                (Some(_), Some(_)) => Some(false),
                _ => None,
            }
        }
        (false, false) => None,
    }
}

/// A person's name as the caller gave it.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonName {
    pub given: String,
    pub family: String,
}

impl std::fmt::Debug for PersonName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonName(<redacted>)")
    }
}

const NAME_FILLER: &[&str] = &[
    "my", "name", "name's", "names", "is", "it's", "its", "it", "this", "i'm", "im", "i", "am",
    "the", "patient", "uh", "um", "er", "erm", "hmm", "hi", "hello", "yes", "yeah", "sure", "ok",
    "okay", "so", "well", "last", "first", "and", "called", "that's", "thats", "spelled", "spelt",
    "speaking", "here", "hey", "oh", "mr", "mrs", "ms", "miss", "dr", "doctor", "full", "please",
    "like", "calling", "call", "me",
];

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Joins letters spelled one by one: "s m i t h" -> "smith", "s as in sam m i" -> "smi".
fn join_spelled(ws: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut run = String::new();
    let mut i = 0;
    while i < ws.len() {
        let w = ws[i];
        if w.len() == 1 && w.chars().all(|c| c.is_ascii_alphabetic()) {
            run.push_str(w);
            // "s as in sam"
            if ws.get(i + 1) == Some(&"as") && ws.get(i + 2) == Some(&"in") {
                i += 4;
            } else if ws.get(i + 1) == Some(&"for") {
                i += 3;
            } else {
                i += 1;
            }
            continue;
        }
        if !run.is_empty() {
            out.push(std::mem::take(&mut run));
        }
        out.push(w.to_string());
        i += 1;
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// A full name: "John Smith", "my name is John Smith", "Smith, John" (comma: family first),
/// "John Smith S M I T H" (the spelling wins for the family name), "J O H N  S M I T H".
pub fn person_name(text: &str) -> Option<PersonName> {
    let comma_family_first = {
        let t = text.trim();
        let parts: Vec<&str> = t.split(',').collect();
        parts.len() == 2
            && parts[0].split_whitespace().count() == 1
            && parts[1].split_whitespace().count() == 1
    };
    let n = normalize(text);
    let raw: Vec<&str> = n.split(' ').filter(|w| !w.is_empty()).collect();
    let joined = join_spelled(&raw);
    let mut names: Vec<String> = joined
        .into_iter()
        .filter(|w| !NAME_FILLER.contains(&w.as_str()))
        .filter(|w| {
            w.chars()
                .all(|c| c.is_alphabetic() || c == '\'' || c == '-')
        })
        .filter(|w| w.len() >= 2)
        .collect();
    // "John Smith, S M I T H": a spelled repeat of a spoken word replaces nothing but is dropped
    let mut dedup: Vec<String> = Vec::new();
    for w in names.drain(..) {
        if dedup.last() != Some(&w) {
            dedup.push(w);
        }
    }
    if dedup.len() == 3 && dedup[2] == dedup[1] {
        dedup.pop();
    }
    if dedup.len() < 2 {
        return None;
    }
    if dedup.len() > 3 {
        return None;
    }
    let (given, family) = if comma_family_first {
        (dedup[1].clone(), dedup[0].clone())
    } else {
        (dedup[0].clone(), dedup[dedup.len() - 1].clone())
    };
    Some(PersonName {
        given: capitalize(&given),
        family: capitalize(&family),
    })
}

/// Compares names the way the identity gate must: case, accents of ASCII, spaces, hyphens and
/// apostrophes ignored.
pub fn name_key(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether the given name(s) on file answer to `heard` under `same`: the whole of them, or the
/// first ("Mary Ann" on file answers to "Mary").
pub fn answers_to(heard: &str, on_file: &str, same: fn(&str, &str) -> bool) -> bool {
    same(heard, on_file)
        || on_file
            .split_whitespace()
            .next()
            .is_some_and(|first| same(heard, first))
}

/// The same name by [`name_key`].
pub fn same_name(a: &str, b: &str) -> bool {
    name_key(a) == name_key(b)
}

/// Whether a given name heard on the phone may be the one on file: the same by [`name_key`], or,
/// for names of three letters or more, one edit apart with the same first letter ("Marie" for
/// "Maria", "Jon" for "John"): the recognizer spells names the way they sound. The family name
/// and the date of birth are still compared exactly, so this does not widen who can verify.
pub fn given_name_close(heard: &str, on_file: &str) -> bool {
    let (heard, on_file) = (name_key(heard), name_key(on_file));
    if heard == on_file {
        return true;
    }
    heard.chars().count().min(on_file.chars().count()) >= 3
        && heard.chars().next() == on_file.chars().next()
        && strsim::damerau_levenshtein(&heard, &on_file) <= 1
}

/// Part of a day a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayPart {
    Morning,
    Afternoon,
    Evening,
}

/// A window of time the caller would like: a range of days and, optionally, of times of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When {
    pub first_day: Date,
    pub last_day: Date,
    /// Inclusive start, exclusive end within each day.
    pub time: Option<(Time, Time)>,
    /// An exact time was said ("at 2:30").
    pub exact: Option<Time>,
}

fn weekday(w: &str) -> Option<Weekday> {
    Some(match w {
        "monday" | "mon" => Weekday::Monday,
        "tuesday" | "tue" | "tues" => Weekday::Tuesday,
        "wednesday" | "wed" => Weekday::Wednesday,
        "thursday" | "thu" | "thur" | "thurs" => Weekday::Thursday,
        "friday" | "fri" => Weekday::Friday,
        "saturday" | "sat" => Weekday::Saturday,
        "sunday" | "sun" => Weekday::Sunday,
        _ => return None,
    })
}

fn t(h: i8, m: i8) -> Time {
    Time::new(h, m, 0, 0).unwrap_or(Time::midnight())
}

fn small_number(ws: &[String], i: usize) -> Option<(u32, usize)> {
    let w = ws.get(i)?.as_str();
    if let Ok(n) = w.parse::<u32>() {
        return Some((n, 1));
    }
    if let Some(x) = teen(w) {
        return Some((x, 1));
    }
    if let Some(x) = tens(w) {
        if let Some(u) = ws.get(i + 1).and_then(|w| unit(w)).filter(|u| *u > 0) {
            return Some((x + u, 2));
        }
        return Some((x, 1));
    }
    if let Some(u) = unit(w) {
        if w == "oh" || w == "o" {
            if let Some(u2) = ws.get(i + 1).and_then(|w| unit(w)) {
                return Some((u2, 2));
            }
            return None;
        }
        return Some((u, 1));
    }
    None
}

/// A clock time said after "at" or with am/pm: "2:30", "two thirty", "2 pm", "half past two",
/// "quarter to three", "noon". Bare hours 1-6 are read as afternoon (clinic hours).
fn clock_time(ws: &[String]) -> Option<Time> {
    let has = |w: &str| ws.iter().any(|x| x == w);
    if has("noon") || has("midday") {
        return Some(t(12, 0));
    }
    for i in 0..ws.len() {
        let w = ws[i].as_str();
        // 2:30, or 2.30 before am/pm (how whisper writes it in British English)
        let meridiem_next = matches!(
            ws.get(i + 1).map(String::as_str),
            Some("am" | "pm" | "a" | "p")
        );
        if let Some((h, m)) = w
            .split_once(':')
            .or_else(|| w.split_once('.').filter(|_| meridiem_next))
            && let (Ok(h), Ok(m)) = (h.parse::<i8>(), m.parse::<i8>())
        {
            return Some(with_meridiem(h, m, ws.get(i + 1).map(String::as_str)));
        }
        if (w == "half" || w == "quarter")
            && matches!(
                ws.get(i + 1).map(String::as_str),
                Some("past" | "after" | "to" | "till" | "before")
            )
            && let Some((h, _)) = small_number(ws, i + 2)
        {
            let h = h as i8;
            let mins = if w == "half" { 30 } else { 15 };
            let rel = ws[i + 1].as_str();
            let (h, m) = if matches!(rel, "past" | "after") {
                (h, mins)
            } else {
                (h - 1, 60 - mins)
            };
            return Some(with_meridiem(h, m, None));
        }
    }
    // "at two thirty", "at 2", "2 pm", "two o'clock"
    for i in 0..ws.len() {
        let anchor = ws[i] == "at" || ws[i] == "around" || ws[i] == "about";
        let start = if anchor { i + 1 } else { i };
        let Some((h, used)) = small_number(ws, start) else {
            continue;
        };
        let after = start + used;
        let mer = ws.get(after).map(String::as_str);
        let is_mer = matches!(mer, Some("am" | "pm" | "a" | "p" | "oclock" | "o'clock"))
            || (mer == Some("o") && ws.get(after + 1).map(String::as_str) == Some("clock"));
        if !anchor && !is_mer {
            continue;
        }
        if !(1..=12).contains(&h) && !(13..=23).contains(&h) {
            continue;
        }
        let (m, mer_at) = match small_number(ws, after) {
            Some((m, used2)) if m < 60 && !is_mer => (m, after + used2),
            _ => (0, after),
        };
        let mer = ws.get(mer_at).map(String::as_str);
        return Some(with_meridiem(h as i8, m as i8, mer));
    }
    None
}

fn with_meridiem(h: i8, m: i8, mer: Option<&str>) -> Time {
    let h = match mer {
        Some("pm" | "p") if h < 12 => h + 12,
        Some("am" | "a") if h == 12 => 0,
        Some("am" | "a") => h,
        _ if (1..=6).contains(&h) => h + 12,
        _ => h,
    };
    t(h.clamp(0, 23), m.clamp(0, 59))
}

/// A date and time window from what the caller said, relative to `today`: "tomorrow at 2:30",
/// "next Tuesday afternoon", "Friday morning", "March 10th", "next week", "this afternoon".
pub fn when(text: &str, today: Date) -> Option<When> {
    let ws = words(text);
    let has = |w: &str| ws.iter().any(|x| x == w);
    let mut first = None;
    let mut last = None;
    if has("today")
        || (has("this") && (has("afternoon") || has("morning") || has("evening")))
        || has("tonight")
    {
        first = Some(today);
    }
    if has("tomorrow") {
        let day_after = ws.windows(3).any(|w| w[0] == "day" && w[1] == "after");
        let d = today.tomorrow().ok()?;
        first = Some(if day_after { d.tomorrow().ok()? } else { d });
    }
    if let Some((i, wd)) = ws
        .iter()
        .enumerate()
        .find_map(|(i, w)| weekday(w).map(|d| (i, d)))
    {
        let next = i > 0 && ws[i - 1] == "next";
        let mut d = today.tomorrow().ok()?;
        while d.weekday() != wd {
            d = d.tomorrow().ok()?;
        }
        // "next Tuesday" said on a Monday means the Tuesday of next week
        if next && d.since(today).ok()?.get_days() < 7 && today.weekday() != Weekday::Sunday {
            let days_into_week = today.weekday().to_monday_zero_offset();
            let target = wd.to_monday_zero_offset();
            if target > days_into_week {
                d = d.checked_add(jiff::Span::new().days(7)).ok()?;
            }
        }
        first = Some(d);
    }
    if first.is_none() && ws.windows(2).any(|w| w[0] == "next" && w[1] == "week") {
        let mut d = today.tomorrow().ok()?;
        while d.weekday() != Weekday::Monday {
            d = d.tomorrow().ok()?;
        }
        first = Some(d);
        last = d.checked_add(jiff::Span::new().days(4)).ok();
    }
    if first.is_none()
        && (has("week") && has("this")
            || has("soon")
            || has("asap")
            || has("earliest")
            || has("soonest")
            || has("anytime")
            || has("first"))
    {
        first = Some(today.tomorrow().ok()?);
        last = today.checked_add(jiff::Span::new().days(14)).ok();
    }
    if first.is_none() {
        // a month and day: "March 10th", "the 10th of March"
        let toks = tokenize_numbers(text);
        if let Some(mi) = toks.iter().position(|t| matches!(t, Tok::Month(_))) {
            let Tok::Month(m) = toks[mi] else { return None };
            let day = toks[mi + 1..]
                .iter()
                .chain(toks[..mi].iter().rev())
                .find_map(|t| match t {
                    Tok::Ord(d) => Some(*d),
                    Tok::Num(n) => n.parse::<u32>().ok().filter(|d| (1..=31).contains(d)),
                    _ => None,
                })?;
            let mut d = Date::new(today.year(), m, day as i8).ok()?;
            if d < today {
                d = Date::new(today.year() + 1, m, day as i8).ok()?;
            }
            first = Some(d);
        }
    }
    let exact = clock_time(&ws);
    let part = if has("morning") {
        Some(DayPart::Morning)
    } else if has("afternoon") {
        Some(DayPart::Afternoon)
    } else if has("evening") || has("tonight") {
        Some(DayPart::Evening)
    } else {
        None
    };
    if first.is_none() && exact.is_none() && part.is_none() {
        return None;
    }
    let first = first.unwrap_or(today);
    let time = match (exact, part) {
        (Some(e), _) => Some((e, e.checked_add(jiff::Span::new().minutes(1)).ok()?)),
        (None, Some(DayPart::Morning)) => Some((t(7, 0), t(12, 0))),
        (None, Some(DayPart::Afternoon)) => Some((t(12, 0), t(17, 0))),
        (None, Some(DayPart::Evening)) => Some((t(17, 0), t(21, 0))),
        (None, None) => None,
    };
    Some(When {
        first_day: first,
        last_day: last.unwrap_or(first),
        time,
        exact,
    })
}

#[cfg(test)]
mod tests;
