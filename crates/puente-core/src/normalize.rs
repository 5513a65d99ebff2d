//! Normalisers for match keys: the same person or company written two ways
//! must produce the same key.

use crate::Value;

/// A syntactically valid e-mail address (RFC 5322 addr-spec, internationalised
/// local parts and domains allowed).
pub fn is_valid_email(s: &str) -> bool {
    email_address::EmailAddress::is_valid(s) && s.contains('.')
}

/// Trimmed and lower-cased; `None` when empty.
pub fn email(s: &str) -> Option<String> {
    let t = s.trim().to_lowercase();
    (!t.is_empty()).then_some(t)
}

/// E.164 (`+14155552671`) when the number parses, with `region` (ISO 3166
/// alpha-2) used for numbers written without a country code.
pub fn phone_e164(s: &str, region: Option<&str>) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let country = region.and_then(|r| {
        r.to_ascii_uppercase()
            .parse::<phonenumber::country::Id>()
            .ok()
    });
    let parsed = phonenumber::parse(country, s).ok()?;
    if !phonenumber::is_valid(&parsed) {
        return None;
    }
    Some(parsed.format().mode(phonenumber::Mode::E164).to_string())
}

/// The bare host of a company website or e-mail domain: `https://www.Acme.com/about`
/// and `acme.com` both give `acme.com`.
pub fn domain(s: &str) -> Option<String> {
    let mut t = s.trim().to_lowercase();
    if let Some(at) = t.rfind('@') {
        t = t[at + 1..].to_string();
    }
    let t = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .unwrap_or(&t)
        .to_string();
    let host = t.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.split(':').next().unwrap_or("");
    let host = host
        .strip_prefix("www.")
        .unwrap_or(host)
        .trim_end_matches('.');
    (!host.is_empty()).then(|| host.to_string())
}

/// Case- and space-insensitive text: `  ACME  Corp ` = `acme corp`.
pub fn text(s: &str) -> Option<String> {
    let t = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    (!t.is_empty()).then_some(t)
}

/// How a match key is normalised before comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyNormalizer {
    Email,
    Phone,
    Domain,
    Text,
    Exact,
}

impl KeyNormalizer {
    pub fn parse(s: &str) -> Option<KeyNormalizer> {
        Some(match s {
            "email" => KeyNormalizer::Email,
            "phone" => KeyNormalizer::Phone,
            "domain" => KeyNormalizer::Domain,
            "text" => KeyNormalizer::Text,
            "exact" => KeyNormalizer::Exact,
            _ => return None,
        })
    }

    pub fn apply(self, v: &Value, region: Option<&str>) -> Option<String> {
        let t = v.to_text()?;
        match self {
            KeyNormalizer::Email => email(&t),
            KeyNormalizer::Phone => phone_e164(&t, region).or_else(|| {
                let digits: String = t.chars().filter(|c| c.is_ascii_digit()).collect();
                (!digits.is_empty()).then_some(digits)
            }),
            KeyNormalizer::Domain => domain(&t),
            KeyNormalizer::Text => text(&t),
            KeyNormalizer::Exact => Some(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_trim_and_lowercase() {
        assert_eq!(email("  Ann@Example.COM "), Some("ann@example.com".into()));
        assert_eq!(email("   "), None);
        assert!(is_valid_email("ann@example.com"));
        assert!(is_valid_email("josé@exämple.de"));
        assert!(!is_valid_email("ann@"));
        assert!(!is_valid_email("ann example.com"));
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(
            phone_e164("+1 (415) 555-2671", None),
            Some("+14155552671".into())
        );
        assert_eq!(
            phone_e164("(415) 555-2671", Some("us")),
            Some("+14155552671".into())
        );
        assert_eq!(
            phone_e164("030 1234567", Some("DE")),
            Some("+49301234567".into())
        );
        assert_eq!(phone_e164("hello", None), None);
    }

    #[test]
    fn domains_come_from_urls_and_emails() {
        assert_eq!(
            domain("https://www.Acme.com/about?x=1"),
            Some("acme.com".into())
        );
        assert_eq!(domain("sales@acme.com"), Some("acme.com".into()));
        assert_eq!(domain("acme.com:8080"), Some("acme.com".into()));
    }
}
