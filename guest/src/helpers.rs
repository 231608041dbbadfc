//! Pure helpers for scripts: base64 and hex, SHA-256 and HMAC-SHA-256, a
//! constant-time comparison, UUIDs and random numbers, and the current time.
//!
//! Randomness comes from WASI `random_get` and time from WASI
//! `clock_time_get`, both implemented by the host from its own secure random
//! source and wall clock; nothing here reaches anything else. Every failure
//! is an ordinary Rhai error at the calling line, never a trap.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use rhai::{Blob, Dynamic, Engine, EvalAltResult, FuncRegistration, ImmutableString, Position};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A Rhai runtime error; Rhai fills in the position of the calling line.
pub fn script_error(message: String) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into(), Position::NONE).into()
}

/// The most bytes one `random_bytes` call returns.
const MAX_RANDOM_BYTES: i64 = 65_536;

/// Standard alphabet; decoding accepts input with or without padding.
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// URL-safe alphabet without padding (RFC 4648, section 5, as in JWTs);
/// decoding accepts input with or without padding.
const BASE64_URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Registers a function once for a string and once for a blob argument.
macro_rules! register_bytes_fn {
    ($engine:expr, $name:literal, $function:expr) => {{
        let function: fn(&[u8]) -> String = $function;
        $engine
            .register_fn($name, move |text: ImmutableString| {
                function(text.as_bytes())
            })
            .register_fn($name, move |bytes: Blob| function(&bytes));
    }};
}

/// Registers every helper.
pub fn register(engine: &mut Engine) {
    register_bytes_fn!(engine, "base64_encode", |bytes: &[u8]| BASE64_STANDARD
        .encode(bytes));
    register_bytes_fn!(engine, "base64url_encode", |bytes: &[u8]| BASE64_URL
        .encode(bytes));
    register_bytes_fn!(engine, "hex_encode", |bytes: &[u8]| hex::encode(bytes));
    register_bytes_fn!(engine, "sha256", |bytes: &[u8]| hex::encode(
        Sha256::digest(bytes)
    ));
    engine
        .register_fn("base64_decode", |text: &str| {
            decode_base64("base64_decode", &BASE64_STANDARD, text)
        })
        .register_fn("base64url_decode", |text: &str| {
            decode_base64("base64url_decode", &BASE64_URL, text)
        })
        .register_fn("hex_decode", |text: &str| {
            hex::decode(text.trim())
                .map_err(|error| script_error(format!("hex_decode: invalid hex: {error}")))
        })
        .register_fn("hmac_sha256", |key: Dynamic, data: Dynamic| {
            let key = bytes_of("hmac_sha256", "key", &key)?;
            let data = bytes_of("hmac_sha256", "data", &data)?;
            // HMAC accepts keys of any length, so this cannot fail.
            let mut mac = Hmac::<Sha256>::new_from_slice(&key)
                .map_err(|error| script_error(format!("hmac_sha256: {error}")))?;
            mac.update(&data);
            Ok::<_, Box<EvalAltResult>>(hex::encode(mac.finalize().into_bytes()))
        })
        .register_fn("constant_time_eq", |left: Dynamic, right: Dynamic| {
            let left = bytes_of("constant_time_eq", "first argument", &left)?;
            let right = bytes_of("constant_time_eq", "second argument", &right)?;
            Ok::<_, Box<EvalAltResult>>(bool::from(left.as_slice().ct_eq(right.as_slice())))
        })
        .register_fn("ms_to_iso", iso_from_ms);
    // Volatile: each call gives a new value, so no optimisation may ever
    // evaluate one of these once and reuse the result.
    let volatile = |name: &str| FuncRegistration::new(name).with_volatility(true);
    volatile("random_bytes").register_into_engine(engine, random_bytes);
    volatile("random_int").register_into_engine(engine, random_int);
    volatile("random_float").register_into_engine(engine, || {
        // 53 random bits give every float in [0, 1) that is a multiple of 2^-53.
        Ok::<_, Box<EvalAltResult>>((random_u64()? >> 11) as f64 / (1u64 << 53) as f64)
    });
    volatile("uuid_v4").register_into_engine(engine, uuid_v4);
    volatile("now_ms").register_into_engine(engine, now_ms);
    volatile("now_iso").register_into_engine(engine, || now_ms().map(iso_from_ms));
}

/// The bytes of a string (UTF-8) or a blob; any other type is an error.
fn bytes_of(function: &str, what: &str, value: &Dynamic) -> Result<Vec<u8>, Box<EvalAltResult>> {
    if let Some(text) = value.read_lock::<ImmutableString>() {
        return Ok(text.as_bytes().to_vec());
    }
    if let Some(bytes) = value.read_lock::<Blob>() {
        return Ok(bytes.clone());
    }
    Err(script_error(format!(
        "{function}: the {what} must be a string or a blob, not '{}'",
        crate::convert::type_name(value)
    )))
}

fn decode_base64(
    function: &str,
    engine: &GeneralPurpose,
    text: &str,
) -> Result<Blob, Box<EvalAltResult>> {
    engine
        .decode(text.trim())
        .map_err(|error| script_error(format!("{function}: invalid base64: {error}")))
}

fn fill_random(bytes: &mut [u8]) -> Result<(), Box<EvalAltResult>> {
    // The host fills at most 64 KiB per call; ask in pieces no larger.
    for chunk in bytes.chunks_mut(MAX_RANDOM_BYTES as usize) {
        getrandom::getrandom(chunk)
            .map_err(|error| script_error(format!("the random source failed: {error}")))?;
    }
    Ok(())
}

fn random_u64() -> Result<u64, Box<EvalAltResult>> {
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

fn random_bytes(count: i64) -> Result<Blob, Box<EvalAltResult>> {
    if !(0..=MAX_RANDOM_BYTES).contains(&count) {
        return Err(script_error(format!(
            "random_bytes: the count must be between 0 and {MAX_RANDOM_BYTES}, not {count}"
        )));
    }
    let mut bytes = vec![0u8; count as usize];
    fill_random(&mut bytes)?;
    Ok(bytes)
}

/// A uniformly distributed integer in `min..=max`.
fn random_int(min: i64, max: i64) -> Result<i64, Box<EvalAltResult>> {
    if min > max {
        return Err(script_error(format!(
            "random_int: the minimum {min} is larger than the maximum {max}"
        )));
    }
    // The width of the range minus one, which always fits in a u64.
    let span = max.wrapping_sub(min) as u64;
    if span == u64::MAX {
        return Ok(random_u64()? as i64);
    }
    let range = span + 1;
    // Reject the top partial block of u64 values so every result is equally likely.
    let zone = u64::MAX - (u64::MAX % range + 1) % range;
    loop {
        let candidate = random_u64()?;
        if candidate <= zone {
            return Ok(min.wrapping_add((candidate % range) as i64));
        }
    }
}

fn uuid_v4() -> Result<String, Box<EvalAltResult>> {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    let hex = hex::encode(bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Milliseconds since the Unix epoch, from the host's wall clock.
fn now_ms() -> Result<i64, Box<EvalAltResult>> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|duration| duration.as_millis() as i64)
        .map_err(|error| script_error(format!("the clock is before 1970: {error}")))
}

/// Formats milliseconds since the Unix epoch as an RFC 3339 UTC time with
/// milliseconds, e.g. `2026-01-31T12:00:00.000Z`.
fn iso_from_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let ms_of_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01),
/// after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
