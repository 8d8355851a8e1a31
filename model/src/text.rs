//! Vietnamese text: names are stored and returned in NFC; searches also match without
//! diacritics ("Vi Thanh" finds "Vị Thanh").

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Canonical (NFC) form of a name, trimmed.
pub fn nfc(s: &str) -> String {
    s.trim().nfc().collect()
}

/// A lower-case, diacritic-free key for matching ("Mỹ Tho" -> "my tho", "Đông" -> "dong").
pub fn fold(s: &str) -> String {
    s.nfd()
        .filter(|c| !is_combining_mark(*c))
        .map(|c| match c {
            'đ' | 'Đ' => 'd',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_drops_vietnamese_diacritics() {
        assert_eq!(fold("Vị Thanh"), "vi thanh");
        assert_eq!(fold("Đông Xuyên"), "dong xuyen");
        assert_eq!(fold("Ngã Bảy"), "nga bay");
    }

    #[test]
    fn nfc_composes_decomposed_input() {
        let decomposed = "Vi\u{0323} Thanh";
        assert_eq!(nfc(decomposed), "Vị Thanh");
    }
}
