//! Input rules checked before anything reaches the database, so that a bad
//! value is refused with the name of its field rather than a SQL error.

use crate::error::{StoreError, StoreResult};

/// App slugs that would shadow the server's own routes under `/`; the one
/// list shared with the orchestrator.
pub use picloud_shared::RESERVED_APP_SLUGS;

/// Checks an app slug against `^[a-z0-9][a-z0-9-]{0,62}$` and the reserved list.
pub fn app_slug(slug: &str) -> StoreResult<()> {
    if !matches_name_pattern(slug, |character| character == '-') {
        return Err(StoreError::invalid(
            "slug",
            format!(
                "`{slug}` must be 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"
            ),
        ));
    }
    if RESERVED_APP_SLUGS.contains(&slug) {
        return Err(StoreError::invalid(
            "slug",
            format!("`{slug}` is reserved for the server's own routes"),
        ));
    }
    Ok(())
}

/// Checks a script name against `^[a-z0-9][a-z0-9_-]{0,62}$`.
pub fn script_name(name: &str) -> StoreResult<()> {
    if matches_name_pattern(name, |character| character == '-' || character == '_') {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "name",
            format!(
                "`{name}` must be 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
            ),
        ))
    }
}

/// Checks a username against `^[a-z0-9][a-z0-9_.-]{0,62}$`.
pub fn username(username: &str) -> StoreResult<()> {
    if matches_name_pattern(username, |character| matches!(character, '-' | '_' | '.')) {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "username",
            format!(
                "`{username}` must be 1 to 63 characters of a-z, 0-9, '_', '-' and '.', starting with a letter or digit"
            ),
        ))
    }
}

/// Checks the shape of an e-mail address: one `@` between two non-empty
/// parts, no spaces, at most 254 characters. Deliverability is not checked.
pub fn email(email: &str) -> StoreResult<()> {
    let shape_is_right = email.len() <= 254
        && !email
            .chars()
            .any(|character| character.is_whitespace() || character.is_control())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if shape_is_right {
        Ok(())
    } else {
        Err(StoreError::invalid(
            "email",
            format!("`{email}` is not an e-mail address"),
        ))
    }
}

/// Checks a display name (of an app or an API token): 1 to 100 characters,
/// not only spaces, no control characters.
pub fn display_name(field: &'static str, name: &str) -> StoreResult<()> {
    if name.trim().is_empty() {
        return Err(StoreError::invalid(field, "must not be empty"));
    }
    if name.chars().count() > 100 {
        return Err(StoreError::invalid(field, "must be at most 100 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Normalises and checks a host name: lower-cased, one trailing dot removed;
/// labels of a-z, 0-9 and '-' (not at either end), at most 253 characters;
/// no port.
pub fn host(host: &str) -> StoreResult<String> {
    let normalized = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_is_valid = |label: &str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|character| {
                character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-'
            })
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if normalized.is_empty() || normalized.len() > 253 || !normalized.split('.').all(label_is_valid)
    {
        return Err(StoreError::invalid(
            "host",
            format!(
                "`{host}` is not a host name (letters, digits, '-' and dots; no port, no scheme)"
            ),
        ));
    }
    Ok(normalized)
}

/// Checks that an app's settings are a JSON object.
pub fn settings(settings: &serde_json::Value) -> StoreResult<()> {
    let Some(settings) = settings.as_object() else {
        return Err(StoreError::invalid("settings", "must be a JSON object"));
    };
    match settings.get("limits") {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(limits) => app_limits(limits),
    }
}

/// The limits an app may override, with the largest value each may take
/// before the instance-wide maximum clamps it anyway.
const APP_LIMITS: [(&str, &str); 4] = [
    ("fuel", "settings.limits.fuel"),
    ("deadline_ms", "settings.limits.deadline_ms"),
    ("memory_bytes", "settings.limits.memory_bytes"),
    ("output_bytes", "settings.limits.output_bytes"),
];

/// Checks `settings.limits`: an object of positive integers named in
/// [`APP_LIMITS`]; the server clamps each to the instance's maximum.
fn app_limits(limits: &serde_json::Value) -> StoreResult<()> {
    let Some(limits) = limits.as_object() else {
        return Err(StoreError::invalid(
            "settings.limits",
            "must be a JSON object of fuel, deadline_ms, memory_bytes and output_bytes",
        ));
    };
    for (name, value) in limits {
        let Some((_, field)) = APP_LIMITS.iter().find(|(known, _)| known == name) else {
            return Err(StoreError::invalid(
                "settings.limits",
                format!(
                    "unknown limit `{name}`; the limits are fuel, deadline_ms, memory_bytes and output_bytes"
                ),
            ));
        };
        if !(value.is_null() || value.as_u64().is_some_and(|number| number > 0)) {
            return Err(StoreError::invalid(
                field,
                "must be a positive integer (or null for the default)",
            ));
        }
    }
    Ok(())
}

/// Checks a short required text field of the audit log.
pub fn audit_text(field: &'static str, text: &str) -> StoreResult<()> {
    if text.trim().is_empty() {
        Err(StoreError::invalid(field, "must not be empty"))
    } else if text.len() > 500 {
        Err(StoreError::invalid(field, "must be at most 500 bytes"))
    } else {
        Ok(())
    }
}

/// `^[a-z0-9][a-z0-9{extra}]{0,62}$`, where `extra` says which punctuation
/// is allowed after the first character.
fn matches_name_pattern(text: &str, extra: impl Fn(char) -> bool) -> bool {
    let mut characters = text.chars();
    let first_is_valid = characters
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit());
    first_is_valid
        && text.len() <= 63
        && characters.all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || extra(character)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for good in ["a", "shop", "0", "my-app-2", &"a".repeat(63)] {
            assert!(app_slug(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-shop",
            "Shop",
            "my_app",
            "a b",
            "ümlaut",
            "api",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(
                    app_slug(bad),
                    Err(StoreError::Invalid { field: "slug", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn script_names() {
        for good in ["hello", "get_user", "v2-api", "9"] {
            assert!(script_name(good).is_ok(), "{good}");
        }
        for bad in ["", "_x", "Hello", "a.b", "a/b", &"a".repeat(64)] {
            assert!(
                matches!(
                    script_name(bad),
                    Err(StoreError::Invalid { field: "name", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(host("Example.COM.").unwrap(), "example.com");
        assert_eq!(host("localhost").unwrap(), "localhost");
        for bad in [
            "",
            "example.com:8080",
            "http://x",
            "-a.com",
            "a..b",
            "a_b.com",
        ] {
            assert!(
                matches!(host(bad), Err(StoreError::Invalid { field: "host", .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn emails() {
        assert!(email("Bob@Example.com").is_ok());
        for bad in ["", "bob", "@x", "bob@", "a@b@c", "b ob@x"] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }
}
