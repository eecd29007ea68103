//! English number and month words: one table for saying numbers (`speech::text`, before
//! synthesis) and for hearing them (`dialog::parse`, after recognition), so the two cannot drift
//! apart. Plain data and exact lookups; the spellings only one side needs (what the recognizer
//! writes: "oh", "fourty", "sept") stay with that side.

/// Zero to nineteen, indexed by value.
pub const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];

/// Tens by their digit ("twenty" at 2); 0 and 1 are empty (those are in [`ONES`]).
pub const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// Ordinals from zeroth to nineteenth, indexed by value.
pub const ORDINAL_ONES: [&str; 20] = [
    "zeroth",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
];

/// Ordinal tens by their digit ("twentieth" at 2); 0 and 1 are empty.
pub const ORDINAL_TENS: [&str; 10] = [
    "",
    "",
    "twentieth",
    "thirtieth",
    "fortieth",
    "fiftieth",
    "sixtieth",
    "seventieth",
    "eightieth",
    "ninetieth",
];

/// Month names, January at 0, capitalized as written.
pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The index of `word` in `table`, for the words in `range` only (exact, lower-case words).
pub fn value_in(table: &[&str], range: std::ops::Range<usize>, word: &str) -> Option<u32> {
    table
        .get(range.clone())?
        .iter()
        .position(|w| !w.is_empty() && *w == word)
        .and_then(|i| u32::try_from(i + range.start).ok())
}

/// The month number (1 = January) of a full month name, in any case.
pub fn month_number(word: &str) -> Option<i8> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(word))
        .and_then(|i| i8::try_from(i + 1).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_give_the_value_and_nothing_outside_the_range() {
        assert_eq!(value_in(&ONES, 1..10, "seven"), Some(7));
        assert_eq!(value_in(&ONES, 1..10, "zero"), None);
        assert_eq!(value_in(&ONES, 10..20, "twelve"), Some(12));
        assert_eq!(value_in(&TENS, 2..10, "ninety"), Some(9));
        assert_eq!(value_in(&TENS, 0..10, ""), None);
        assert_eq!(value_in(&ORDINAL_TENS, 2..4, "fortieth"), None);
        assert_eq!(value_in(&ONES, 15..30, "one"), None);
        assert_eq!(month_number("march"), Some(3));
        assert_eq!(month_number("December"), Some(12));
        assert_eq!(month_number("mar"), None);
    }
}
