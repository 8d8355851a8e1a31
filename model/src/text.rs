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

/// May `c` appear in free text we keep? Everything XML 1.0 allows (so an Open311 XML
/// answer stays well-formed) except control characters other than tab and line breaks:
/// XML forbids C0 controls and U+FFFE/U+FFFF; C1 controls have no business in a report.
pub fn allowed_char(c: char) -> bool {
    match c {
        '\t' | '\n' | '\r' => true,
        '\u{FFFE}' | '\u{FFFF}' => false,
        c => !c.is_control(),
    }
}

/// Why free text of at most `max` characters is refused, if it is.
pub fn refuse_text(s: &str, max: usize) -> Option<String> {
    if s.chars().count() > max {
        return Some(format!("at most {max} characters"));
    }
    s.chars().find(|c| !allowed_char(*c)).map(|c| {
        format!(
            "must not contain U+{:04X} (control characters and XML-forbidden code points are refused)",
            c as u32
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_refuses_what_xml_forbids_and_keeps_any_script() {
        assert!(refuse_text("Đèn hỏng\nở ngã tư", 100).is_none());
        assert!(refuse_text("街灯 ไฟถนน مصباح", 100).is_none());
        assert!(refuse_text("a\u{FFFE}b", 100).unwrap().contains("U+FFFE"));
        assert!(refuse_text("a\u{0007}", 100).unwrap().contains("U+0007"));
        assert!(refuse_text("a\u{0085}", 100).is_some());
        assert!(refuse_text("abc", 2).unwrap().contains("at most 2"));
    }

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
