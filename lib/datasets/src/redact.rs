//! PII redaction: emails, phone numbers, payment card numbers (Luhn-checked), API keys and
//! secrets, IPv4 and IPv6 addresses are replaced by `[EMAIL]`, `[PHONE]`, `[CARD]`, `[SECRET]`,
//! `[IP]`, and every replacement is counted by kind.
//!
//! Order matters and is fixed: secrets first (a key may contain digits and `@`), then emails,
//! card numbers, IP addresses, and phone numbers last, so that the digits of a card or an address
//! are never half-taken by the phone pattern. Candidates found by a regular expression are
//! validated where a pattern alone is too loose: card numbers must pass the Luhn check and have
//! 13 to 19 digits, IP addresses must parse (`std::net`), phone numbers must have 10 to 15 digits
//! and not touch further digits.
//!
//! Known limits (documented in adr/0007): obfuscated addresses ("user at example dot com") and
//! numbers written in words are not recognised; a run of digit groups shaped like a phone number
//! ("2024 2025 2026") is redacted as one.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde::Serialize;

/// What was redacted, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RedactionCounts {
    pub email: u64,
    pub phone: u64,
    pub card: u64,
    pub secret: u64,
    pub ip: u64,
}

impl RedactionCounts {
    /// Every kind with its count, in a fixed order (metric label values).
    pub fn by_kind(&self) -> [(&'static str, u64); 5] {
        [
            ("email", self.email),
            ("phone", self.phone),
            ("card", self.card),
            ("secret", self.secret),
            ("ip", self.ip),
        ]
    }

    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }
}

struct Patterns {
    pem: Regex,
    secret: Regex,
    bearer: Regex,
    email: Regex,
    card: Regex,
    ipv6: Regex,
    ipv4: Regex,
    phone: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| Patterns {
    pem: Regex::new(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----",
    )
    .unwrap(),
    // Provider key formats: OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), Stripe (sk_live_,
    // rk_live_, sk_test_), AWS access key ids, GitHub tokens, Slack tokens, Google API keys,
    // GitLab tokens, JSON web tokens.
    secret: Regex::new(concat!(
        r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}",
        r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}",
        r"|(?:AKIA|ASIA)[0-9A-Z]{16}",
        r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}",
        r"|xox[abposr]-[A-Za-z0-9-]{10,}",
        r"|AIza[0-9A-Za-z_-]{35}",
        r"|glpat-[A-Za-z0-9_-]{20,}",
        r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})",
    ))
    .unwrap(),
    bearer: Regex::new(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/-]{16,}=*").unwrap(),
    email: Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
        .unwrap(),
    // Issuer numbers start with 2 to 6 (Mastercard 2/5, Amex 3, Visa 4, Discover 6): long ids and
    // nanosecond timestamps starting otherwise are left alone even when they pass Luhn.
    card: Regex::new(r"\b[2-6](?:[ -]?\d){12,18}\b").unwrap(),
    ipv6: Regex::new(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}").unwrap(),
    ipv4: Regex::new(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b").unwrap(),
    phone: Regex::new(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .-]?\d{3,4}[ .-]?\d{3,4}")
        .unwrap(),
});

/// Redacts `text`, adding what it replaced to `counts`. Borrows when nothing matched.
pub fn redact<'a>(text: &'a str, counts: &mut RedactionCounts) -> Cow<'a, str> {
    // Cheap pre-check: every pattern needs a digit, '@' or a secret prefix letter; most short
    // texts have digits anyway, so only the empty string is skipped for free.
    if text.is_empty() {
        return Cow::Borrowed(text);
    }
    let p = &*PATTERNS;
    let mut out = Cow::Borrowed(text);
    out = replace(out, &p.pem, |_| Some("[SECRET]".into()), &mut counts.secret);
    out = replace(
        out,
        &p.secret,
        |_| Some("[SECRET]".into()),
        &mut counts.secret,
    );
    out = replace(
        out,
        &p.bearer,
        |c| Some(format!("{} [SECRET]", &c[1])),
        &mut counts.secret,
    );
    out = replace(out, &p.email, |_| Some("[EMAIL]".into()), &mut counts.email);
    out = replace(out, &p.card, card, &mut counts.card);
    out = replace_checked(out, &p.ipv6, ipv6, "[IP]", &mut counts.ip);
    out = replace(out, &p.ipv4, ipv4, &mut counts.ip);
    out = replace_checked(out, &p.phone, phone, "[PHONE]", &mut counts.phone);
    out
}

/// Replaces each match for which `f` returns a replacement; counts the replacements.
fn replace<'a>(
    text: Cow<'a, str>,
    re: &Regex,
    f: impl Fn(&Captures<'_>) -> Option<String>,
    count: &mut u64,
) -> Cow<'a, str> {
    if !re.is_match(&text) {
        return text;
    }
    let mut n = 0u64;
    let replaced = re
        .replace_all(&text, |c: &Captures<'_>| match f(c) {
            Some(r) => {
                n += 1;
                r
            }
            None => c[0].to_string(),
        })
        .into_owned();
    *count += n;
    if n == 0 {
        text
    } else {
        Cow::Owned(replaced)
    }
}

/// Like [`replace`], but `valid` also sees the text around the match (for boundary checks the
/// regex crate cannot express without look-around).
fn replace_checked<'a>(
    text: Cow<'a, str>,
    re: &Regex,
    valid: fn(&str, usize, usize) -> bool,
    placeholder: &str,
    count: &mut u64,
) -> Cow<'a, str> {
    let mut out = String::new();
    let mut last = 0;
    let mut n = 0u64;
    for m in re.find_iter(&text) {
        if valid(&text, m.start(), m.end()) {
            out.push_str(&text[last..m.start()]);
            out.push_str(placeholder);
            last = m.end();
            n += 1;
        }
    }
    if n == 0 {
        return text;
    }
    out.push_str(&text[last..]);
    *count += n;
    Cow::Owned(out)
}

fn card(c: &Captures<'_>) -> Option<String> {
    let digits: Vec<u32> = c[0].chars().filter_map(|ch| ch.to_digit(10)).collect();
    ((13..=19).contains(&digits.len()) && luhn(&digits)).then(|| "[CARD]".to_string())
}

/// The Luhn checksum of payment card numbers.
pub fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn ipv4(c: &Captures<'_>) -> Option<String> {
    c[0].parse::<Ipv4Addr>().ok().map(|_| "[IP]".to_string())
}

fn ipv6(text: &str, start: usize, end: usize) -> bool {
    let s = &text[start..end];
    let bytes = text.as_bytes();
    // Not part of a longer identifier (`deadbeef::x`, `a1b2:...` inside a word).
    let touches_word = |i: usize| bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_';
    if (start > 0 && touches_word(start - 1)) || (end < bytes.len() && touches_word(end)) {
        return false;
    }
    // Times ("12:30:45") do not parse; a digit is required so that `ab::cd` (code) is kept.
    s.bytes().any(|b| b.is_ascii_digit()) && s.parse::<Ipv6Addr>().is_ok()
}

fn phone(text: &str, start: usize, end: usize) -> bool {
    let s = &text[start..end];
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    if !(10..=15).contains(&digits) {
        return false;
    }
    // Must not touch more digits: a longer number (a card number that failed Luhn, an id) is
    // not a phone number.
    let bytes = text.as_bytes();
    !touches_digit(bytes[..start].iter().rev()) && !touches_digit(bytes[end..].iter())
}

/// Whether the next byte, or the one after a single separator, is a digit.
fn touches_digit<'a>(mut it: impl Iterator<Item = &'a u8>) -> bool {
    match it.next() {
        Some(b) if b.is_ascii_digit() => true,
        Some(b' ' | b'-' | b'.') => it.next().is_some_and(u8::is_ascii_digit),
        _ => false,
    }
}

#[cfg(test)]
#[path = "redact_tests.rs"]
mod tests;
