//! Parser tests: hand-written tricky forms plus generated spoken forms (hundreds of each kind).

use super::*;
use jiff::civil::date;

use crate::words::{MONTHS, ONES, ORDINAL_ONES, TENS};

fn say2(n: u32, hyphen: bool) -> String {
    if n < 20 {
        ONES[n as usize].to_string()
    } else if n.is_multiple_of(10) {
        TENS[(n / 10) as usize].to_string()
    } else {
        let sep = if hyphen { "-" } else { " " };
        format!(
            "{}{sep}{}",
            TENS[(n / 10) as usize],
            ONES[(n % 10) as usize]
        )
    }
}

fn say_ord(n: u32) -> String {
    if n < 20 {
        ORDINAL_ONES[n as usize].to_string()
    } else if n == 20 {
        "twentieth".into()
    } else if n == 30 {
        "thirtieth".into()
    } else {
        format!(
            "{} {}",
            TENS[(n / 10) as usize],
            ORDINAL_ONES[(n % 10) as usize]
        )
    }
}

fn say_year(y: u32) -> String {
    let (hi, lo) = (y / 100, y % 100);
    if (2000..2010).contains(&y) {
        if lo == 0 {
            "two thousand".into()
        } else {
            format!("two thousand {}", ONES[lo as usize])
        }
    } else if lo == 0 {
        format!("{} hundred", say2(hi, false))
    } else if lo < 10 {
        format!("{} oh {}", say2(hi, false), ONES[lo as usize])
    } else {
        format!("{} {}", say2(hi, true), say2(lo, true))
    }
}

/// "oh three" / "twelve" for month and day digit pairs.
fn say_pair(n: u32) -> String {
    if n < 10 {
        format!("oh {}", ONES[n as usize])
    } else {
        say2(n, false)
    }
}

fn sample_dates() -> Vec<Date> {
    let mut out = Vec::new();
    let mut d = date(1931, 1, 1);
    let step = jiff::Span::new().days(97);
    while d < date(2024, 12, 31) {
        out.push(d);
        d = d.checked_add(step).unwrap();
    }
    out.push(date(1975, 3, 3));
    out.push(date(2000, 2, 29));
    out.push(date(1999, 12, 31));
    out
}

const TODAY: Date = date(2026, 11, 23);

#[test]
fn dates_of_birth_in_hundreds_of_spoken_forms() {
    let mut checked = 0;
    for d in sample_dates() {
        let (y, m, day) = (d.year() as u32, d.month() as u32, d.day() as u32);
        let month = MONTHS[(m - 1) as usize];
        let forms = vec![
            format!("{month} {} {}", say_ord(day), say_year(y)),
            format!("{month} {day}, {y}"),
            format!("the {} of {month} {}", say_ord(day), say_year(y)),
            format!("{m}/{day}/{y}"),
            format!("{m:02}-{day:02}-{y}"),
            format!(
                "{} {} {}",
                say_pair(m),
                say_pair(day),
                if !(2000..=2026).contains(&y) {
                    say2(y % 100, true)
                } else {
                    say_year(y)
                }
            ),
            format!("um it's {month} {}{} {y}", day, suffix(day)),
            format!("{}", d),
        ];
        for form in forms {
            assert_eq!(date_of_birth(&form, TODAY), Some(d), "{form:?}");
            checked += 1;
        }
    }
    assert!(checked >= 500, "{checked}");
}

fn suffix(d: u32) -> &'static str {
    match (d % 10, d % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    }
}

#[test]
fn dates_of_birth_hand_written() {
    let cases: &[(&str, Date)] = &[
        ("March third nineteen seventy-five", date(1975, 3, 3)),
        ("march 3rd 1975", date(1975, 3, 3)),
        ("oh three oh three seventy-five", date(1975, 3, 3)),
        (
            "zero three zero three one nine seven five",
            date(1975, 3, 3),
        ),
        ("3/3/1975", date(1975, 3, 3)),
        ("03/03/75", date(1975, 3, 3)),
        ("three three seventy five", date(1975, 3, 3)),
        ("My date of birth is March 3rd, 1975.", date(1975, 3, 3)),
        (
            "uh it's the third of march, nineteen seventy five",
            date(1975, 3, 3),
        ),
        (
            "december twenty first two thousand five",
            date(2005, 12, 21),
        ),
        ("december twenty-first twenty oh five", date(2005, 12, 21)),
        ("July 4th 2012", date(2012, 7, 4)),
        ("july fourth two thousand and twelve", date(2012, 7, 4)),
        ("february twenty ninth two thousand", date(2000, 2, 29)),
        ("1/2/1960", date(1960, 1, 2)),
        ("Jan 2 1960", date(1960, 1, 2)),
        ("sept 30 1988", date(1988, 9, 30)),
        // as the recognizer sometimes writes them
        ("Mark III, 1975.", date(1975, 3, 3)),
        ("mark 3rd 1975", date(1975, 3, 3)),
        ("July XIV, 1980", date(1980, 7, 14)),
        ("May IX 2001", date(2001, 5, 9)),
        ("June XXIV 1990", date(1990, 6, 24)),
    ];
    for (text, want) in cases {
        assert_eq!(date_of_birth(text, TODAY), Some(*want), "{text:?}");
    }
    // "Mark" is a name, and a Roman numeral away from a month is no day
    assert_eq!(date_of_birth("Mark Smith 1975", TODAY), None);
    assert_eq!(date_of_birth("III 1975", TODAY), None);
    assert_eq!(date_of_birth("March IIII 1975", TODAY), None);
}

#[test]
fn not_dates_of_birth() {
    for text in [
        "",
        "I don't know",
        "March",
        "nineteen seventy five",
        "February thirtieth nineteen eighty",
        "13/13/1975",
        "March third twenty fifty",
        "banana",
        "my name is John Smith",
        "one two",
        "2/30/1990",
    ] {
        assert_eq!(date_of_birth(text, TODAY), None, "{text:?}");
    }
}

#[test]
fn phone_numbers_in_hundreds_of_forms() {
    let mut checked = 0;
    for seed in 0..60u64 {
        // a deterministic spread of numbers
        let n = 2_000_000_000u64 + seed * 131_071_337 % 7_999_999_999;
        let s = n.to_string();
        let words_one: Vec<&str> = s.bytes().map(|b| ONES[(b - b'0') as usize]).collect();
        let words_oh: Vec<&str> = s
            .bytes()
            .map(|b| {
                if b == b'0' {
                    "oh"
                } else {
                    ONES[(b - b'0') as usize]
                }
            })
            .collect();
        let forms = vec![
            s.clone(),
            format!("({}) {}-{}", &s[..3], &s[3..6], &s[6..]),
            format!("{}-{}-{}", &s[..3], &s[3..6], &s[6..]),
            format!("1 {} {} {}", &s[..3], &s[3..6], &s[6..]),
            words_one.join(" "),
            format!("my number is {}", words_oh.join(" ")),
            format!("+1{s}"),
        ];
        for form in forms {
            assert_eq!(phone(&form).as_deref(), Some(s.as_str()), "{form:?}");
            checked += 1;
        }
    }
    assert!(checked >= 400);
    assert_eq!(
        phone("five five five double two three one two three four").as_deref(),
        Some("5552231234")
    );
    assert_eq!(phone("five five five one two three").as_deref(), None);
    assert_eq!(phone("no").as_deref(), None);
}

#[test]
fn spelled_and_spoken_names() {
    let cases: &[(&str, &str, &str)] = &[
        ("John Smith", "John", "Smith"),
        ("my name is John Smith", "John", "Smith"),
        ("It's John Smith, S M I T H", "John", "Smith"),
        ("J O H N S M I T H", "Johnsmith", ""),
        ("uh this is maria garcia", "Maria", "Garcia"),
        ("Smith, John", "John", "Smith"),
        ("john s m i t h", "John", "Smith"),
        ("Mary Ann O'Brien", "Mary", "O'brien"),
        ("yes it's Aisha Khan", "Aisha", "Khan"),
        ("name's Wei Chen", "Wei", "Chen"),
        ("Robert James Miller", "Robert", "Miller"),
        ("k as in kilo h a n", "", ""),
    ];
    for (text, given, family) in cases {
        let got = person_name(text);
        if family.is_empty() {
            assert!(got.is_none(), "{text:?}");
            continue;
        }
        let got = got.unwrap_or_else(|| panic!("{text:?}"));
        assert_eq!(
            (got.given.as_str(), got.family.as_str()),
            (*given, *family),
            "{text:?}"
        );
    }
    assert_eq!(
        person_name("aisha k as in kilo h a n").map(|n| n.family),
        Some("Khan".to_string())
    );
    assert!(person_name("").is_none());
    assert!(person_name("smith").is_none());
    assert!(person_name("I want to book an appointment for next week please").is_none());
    assert_eq!(name_key("O'Brien-Smith"), name_key("obrien smith"));
}

#[test]
fn given_names_heard_as_they_sound_match_the_one_on_file() {
    for (heard, on_file) in [
        ("Marie", "Maria"),
        ("Jon", "John"),
        ("ann", "Anna"),
        ("Mary-Ann", "maryann"),
    ] {
        assert!(given_name_close(heard, on_file), "{heard} / {on_file}");
    }
    // another first letter, two edits, or too short to tell apart
    for (heard, on_file) in [
        ("Katherine", "Catherine"),
        ("Steven", "Stephen"),
        ("Marco", "Maria"),
        ("Al", "Ab"),
    ] {
        assert!(!given_name_close(heard, on_file), "{heard} / {on_file}");
    }
}

#[test]
fn generated_names_spoken_and_spelled() {
    let given = [
        "John", "Maria", "Aisha", "Wei", "Olga", "Pat", "Deshawn", "Lena",
    ];
    let family = [
        "Smith", "Garcia", "Khan", "Chen", "Petrov", "Nguyen", "Okafor", "Berg",
    ];
    let mut n = 0;
    for g in given {
        for f in family {
            let spelled: Vec<String> = f.chars().map(|c| c.to_string()).collect();
            for form in [
                format!("{g} {f}"),
                format!("my name is {g} {f}"),
                format!("{g} {}", spelled.join(" ")),
                format!("{f}, {g}"),
                format!("um it's {} {f} {}", g.to_lowercase(), spelled.join(" ")),
            ] {
                let got = person_name(&form).unwrap_or_else(|| panic!("{form:?}"));
                assert_eq!(name_key(&got.given), name_key(g), "{form:?}");
                assert_eq!(name_key(&got.family), name_key(f), "{form:?}");
                n += 1;
            }
        }
    }
    assert!(n >= 300);
}

#[test]
fn yes_and_no() {
    for y in [
        "yes",
        "Yeah.",
        "yep that's right",
        "sure",
        "correct",
        "that's correct",
        "uh huh",
        "yes please",
        "go ahead",
        "okay",
        "absolutely",
        "please do",
        "that works",
        "yeah book it",
        "mm hmm",
    ] {
        assert_eq!(yes_no(y), Some(true), "{y:?}");
    }
    for n in [
        "no",
        "No.",
        "nope",
        "nah",
        "no thanks",
        "that's wrong",
        "no that's all",
        "not really",
        "no that's not right",
        "I'm all set",
        "that's not correct",
        "don't book it",
        "nothing else",
    ] {
        assert_eq!(yes_no(n), Some(false), "{n:?}");
    }
    for x in ["", "banana", "what", "the weather"] {
        assert_eq!(yes_no(x), None, "{x:?}");
    }
}

#[test]
fn digits_spoken_and_written() {
    assert_eq!(digits("one two three").as_deref(), Some("123"));
    assert_eq!(digits("123").as_deref(), Some("123"));
    assert_eq!(digits("oh four").as_deref(), Some("04"));
    assert_eq!(digits("double five").as_deref(), Some("55"));
    assert_eq!(digits("the first one").as_deref(), None);
    assert_eq!(digits("nothing").as_deref(), None);
}

#[test]
fn relative_dates_and_times() {
    // 2026-11-23 is a Monday
    assert_eq!(TODAY.weekday(), Weekday::Monday);
    let w = when("tomorrow at 2:30", TODAY).unwrap();
    assert_eq!(w.first_day, date(2026, 11, 24));
    assert_eq!(w.exact, Some(t(14, 30)));
    let w = when("next Tuesday afternoon", TODAY).unwrap();
    assert_eq!(w.first_day, date(2026, 12, 1));
    assert_eq!(w.time, Some((t(12, 0), t(17, 0))));
    let w = when("Tuesday afternoon", TODAY).unwrap();
    assert_eq!(w.first_day, date(2026, 11, 24));
    let w = when("friday morning", TODAY).unwrap();
    assert_eq!(w.first_day, date(2026, 11, 27));
    assert_eq!(w.time, Some((t(7, 0), t(12, 0))));
    let w = when("next week", TODAY).unwrap();
    assert_eq!(
        (w.first_day, w.last_day),
        (date(2026, 11, 30), date(2026, 12, 4))
    );
    let w = when("March 10th", TODAY).unwrap();
    assert_eq!(w.first_day, date(2027, 3, 10));
    let w = when("the day after tomorrow at ten am", TODAY).unwrap();
    assert_eq!(w.first_day, date(2026, 11, 25));
    assert_eq!(w.exact, Some(t(10, 0)));
    let w = when("this afternoon", TODAY).unwrap();
    assert_eq!(w.first_day, TODAY);
    let w = when("wednesday at two thirty", TODAY).unwrap();
    assert_eq!(w.exact, Some(t(14, 30)));
    let w = when("thursday at 9 am", TODAY).unwrap();
    assert_eq!(w.exact, Some(t(9, 0)));
    let w = when("thursday half past three", TODAY).unwrap();
    assert_eq!(w.exact, Some(t(15, 30)));
    let w = when("monday at noon", TODAY).unwrap();
    assert_eq!((w.first_day, w.exact), (date(2026, 11, 30), Some(t(12, 0))));
    let w = when("as soon as possible", TODAY).unwrap();
    assert_eq!(w.first_day, date(2026, 11, 24));
    assert!(when("I'd like to book", TODAY).is_none());
    assert!(when("", TODAY).is_none());
}

#[test]
fn generated_relative_times() {
    let days = [
        ("monday", date(2026, 11, 30)),
        ("tuesday", date(2026, 11, 24)),
        ("wednesday", date(2026, 11, 25)),
        ("thursday", date(2026, 11, 26)),
        ("friday", date(2026, 11, 27)),
        ("tomorrow", date(2026, 11, 24)),
    ];
    let times: [(String, Time); 18] = [
        ("at 9".into(), t(9, 0)),
        ("at nine".into(), t(9, 0)),
        ("at 9 am".into(), t(9, 0)),
        ("at nine thirty".into(), t(9, 30)),
        ("at 10:15".into(), t(10, 15)),
        ("at ten fifteen".into(), t(10, 15)),
        ("at 11 a m".into(), t(11, 0)),
        ("at noon".into(), t(12, 0)),
        ("at 1".into(), t(13, 0)),
        ("at one pm".into(), t(13, 0)),
        ("at 2:30".into(), t(14, 30)),
        ("at 2.30 pm".into(), t(14, 30)),
        ("at 10.15 a.m.".into(), t(10, 15)),
        ("at two thirty".into(), t(14, 30)),
        ("at three forty five".into(), t(15, 45)),
        ("at 4 p.m.".into(), t(16, 0)),
        ("half past four".into(), t(16, 30)),
        ("quarter to five".into(), t(16, 45)),
    ];
    let mut n = 0;
    for (day, want_day) in &days {
        for (time, want_time) in &times {
            for form in [
                format!("{day} {time}"),
                format!("um could I do {day} {time} please"),
            ] {
                let got = when(&form, TODAY).unwrap_or_else(|| panic!("{form:?}"));
                assert_eq!(got.first_day, *want_day, "{form:?}");
                assert_eq!(got.exact, Some(*want_time), "{form:?}");
                n += 1;
            }
        }
    }
    assert!(n >= 190);
}
