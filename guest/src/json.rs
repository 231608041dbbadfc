//! `json_parse` and `json_stringify`: JSON through serde_json.
//!
//! Rhai's own `parse_json` and `to_json` stay as they are (the conformance
//! test compares them with native Rhai); these are faster additions with
//! stricter, documented conversions. Parsing builds Rhai values directly from
//! serde_json's events, without an intermediate `serde_json::Value`.

use std::fmt;

use rhai::{Array, Blob, Dynamic, Engine, EvalAltResult, ImmutableString, Map};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::helpers::script_error;

/// Registers `json_parse` and `json_stringify`.
pub fn register(engine: &mut Engine) {
    engine
        .register_fn("json_parse", parse_str)
        .register_fn("json_parse", |bytes: Blob| parse(&bytes))
        .register_fn("json_stringify", |value: Dynamic| {
            stringify("json_stringify", &value)
        });
}

/// Parses JSON text into Rhai values: objects become maps, arrays arrays,
/// integers `INT` when they fit in an `i64` (floats otherwise), and `null` `()`.
pub fn parse(bytes: &[u8]) -> Result<Dynamic, Box<EvalAltResult>> {
    parse_with(serde_json::Deserializer::from_slice(bytes))
}

/// [`parse`] for text already known to be UTF-8, which spares serde_json
/// checking every string of it again.
pub fn parse_str(text: &str) -> Result<Dynamic, Box<EvalAltResult>> {
    parse_with(serde_json::Deserializer::from_str(text))
}

fn parse_with<'de, R: serde_json::de::Read<'de>>(
    mut deserializer: serde_json::Deserializer<R>,
) -> Result<Dynamic, Box<EvalAltResult>> {
    RhaiValue
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| script_error(format!("json_parse: invalid JSON: {error}")))
}

/// Writes a value as compact JSON text.
/// `function` names the caller in the error message.
pub fn stringify(function: &str, value: &Dynamic) -> Result<String, Box<EvalAltResult>> {
    serde_json::to_string(&JsonValue(value, 0))
        .map_err(|error| script_error(format!("{function}: {error}")))
}

/// Builds a Rhai value from any serde data (here: serde_json's parser).
struct RhaiValue;

impl<'de> DeserializeSeed<'de> for RhaiValue {
    type Value = Dynamic;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Dynamic, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RhaiValue {
    type Value = Dynamic;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Dynamic, E> {
        Ok(Dynamic::UNIT)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Dynamic, E> {
        Ok(value.into())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Dynamic, E> {
        Ok(value.into())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Dynamic, E> {
        // Integers too large for an INT keep their magnitude as a float, as
        // JavaScript's JSON.parse does.
        Ok(match i64::try_from(value) {
            Ok(value) => value.into(),
            Err(_) => (value as f64).into(),
        })
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Dynamic, E> {
        Ok(value.into())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Dynamic, E> {
        Ok(value.into())
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Dynamic, E> {
        Ok(value.into())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Dynamic, A::Error> {
        let mut array = Array::with_capacity(items.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = items.next_element_seed(RhaiValue)? {
            array.push(item);
        }
        Ok(Dynamic::from_array(array))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Dynamic, A::Error> {
        let mut map = Map::new();
        while let Some(key) = entries.next_key_seed(MapKey)? {
            let value = entries.next_value_seed(RhaiValue)?;
            map.insert(key, value);
        }
        Ok(Dynamic::from_map(map))
    }
}

/// An object's key, built straight into a map key. (Deserialising a
/// `Cow<str>` always allocates a `String`; a short key needs no allocation
/// at all as an inline `Identifier`.)
struct MapKey;

/// Rhai's map key type (`Identifier`), which Rhai does not export by name.
type Key = <Map as KeyOf>::Key;

trait KeyOf {
    type Key;
}

impl<K, V> KeyOf for std::collections::BTreeMap<K, V> {
    type Key = K;
}

impl<'de> DeserializeSeed<'de> for MapKey {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for MapKey {
    type Value = Key;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(value.into())
    }
}

/// A Rhai value seen as JSON. Only data serialises: `()`, booleans, numbers,
/// strings, characters, arrays, maps and blobs (as arrays of bytes); anything
/// else (a function pointer, a timestamp, a `Response`) is an error that
/// names its type. The second field is the nesting depth: values nested
/// deeper than [`MAX_DEPTH`] are refused rather than exhausting the stack.
struct JsonValue<'a>(&'a Dynamic, usize);

/// The deepest nesting `json_stringify` writes, as serde_json's parser reads.
const MAX_DEPTH: usize = 128;

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let JsonValue(value, depth) = *self;
        if depth > MAX_DEPTH {
            return Err(ser::Error::custom(format_args!(
                "values nested more than {MAX_DEPTH} deep cannot be written as JSON"
            )));
        }
        if value.is_unit() {
            serializer.serialize_unit()
        } else if let Ok(flag) = value.as_bool() {
            serializer.serialize_bool(flag)
        } else if let Ok(number) = value.as_int() {
            serializer.serialize_i64(number)
        } else if let Ok(number) = value.as_float() {
            serializer.serialize_f64(number)
        } else if let Ok(character) = value.as_char() {
            serializer.serialize_char(character)
        } else if let Some(text) = value.read_lock::<ImmutableString>() {
            serializer.serialize_str(text.as_str())
        } else if let Some(array) = value.read_lock::<Array>() {
            let mut sequence = serializer.serialize_seq(Some(array.len()))?;
            for item in array.iter() {
                sequence.serialize_element(&JsonValue(item, depth + 1))?;
            }
            sequence.end()
        } else if let Some(map) = value.read_lock::<Map>() {
            let mut object = serializer.serialize_map(Some(map.len()))?;
            for (key, item) in map.iter() {
                object.serialize_entry(key.as_str(), &JsonValue(item, depth + 1))?;
            }
            object.end()
        } else if let Some(bytes) = value.read_lock::<Blob>() {
            let mut sequence = serializer.serialize_seq(Some(bytes.len()))?;
            for byte in bytes.iter() {
                sequence.serialize_element(byte)?;
            }
            sequence.end()
        } else {
            Err(ser::Error::custom(format_args!(
                "a value of type '{}' cannot be written as JSON",
                crate::convert::type_name(value)
            )))
        }
    }
}
