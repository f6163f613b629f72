//! JSON (`serde_json::Value`) as `google.protobuf.Value` / `Struct`.
//!
//! A job's `payload` and `result` are `google.protobuf.Value`, so any JSON value travels, and
//! `grpcurl` / `buf curl` users write and read it as plain JSON. Two properties of the protobuf
//! JSON model to know:
//!
//! * Numbers are IEEE doubles. Integers beyond ±2^53 lose precision on the way out; integral
//!   doubles within that range come back as JSON integers (`1`, not `1.0`).
//! * Non-finite numbers (NaN, ±infinity) have no JSON form and are rejected on the way in.
//!
//! A `google.protobuf.Struct` holds only a JSON object; [`struct_to_json`] and
//! [`json_object_to_struct`] serve messages that use one.

use prost_types::value::Kind;
use prost_types::{ListValue, NullValue, Struct};
use serde_json::{Map, Number, Value as Json};
use switchyard_types::{Error, Result};

/// The largest integer a double represents exactly (2^53).
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Any JSON value as a `google.protobuf.Value`.
pub fn json_to_value(json: Json) -> prost_types::Value {
    let kind = match json {
        Json::Null => Kind::NullValue(NullValue::NullValue.into()),
        Json::Bool(b) => Kind::BoolValue(b),
        // Always `Some` without serde_json's `arbitrary_precision` feature.
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(json_to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(json_object_to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A JSON object as a `google.protobuf.Struct`.
pub fn json_object_to_struct(map: Map<String, Json>) -> Struct {
    Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
    }
}

/// A `google.protobuf.Value` as JSON. A value with no kind set reads as `null`; a non-finite
/// number is invalid against `field`.
pub fn value_to_json(value: prost_types::Value, field: &str) -> Result<Json> {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Ok(Json::Null),
        Some(Kind::BoolValue(b)) => Ok(Json::Bool(b)),
        Some(Kind::NumberValue(n)) => {
            number(n).ok_or_else(|| Error::invalid(field, "contains a number that is not finite"))
        }
        Some(Kind::StringValue(s)) => Ok(Json::String(s)),
        Some(Kind::ListValue(list)) => list
            .values
            .into_iter()
            .map(|v| value_to_json(v, field))
            .collect::<Result<Vec<_>>>()
            .map(Json::Array),
        Some(Kind::StructValue(s)) => struct_to_json(s, field).map(Json::Object),
    }
}

/// A `google.protobuf.Struct` as a JSON object; a non-finite number is invalid against `field`.
pub fn struct_to_json(s: Struct, field: &str) -> Result<Map<String, Json>> {
    s.fields
        .into_iter()
        .map(|(k, v)| Ok((k, value_to_json(v, field)?)))
        .collect()
}

fn number(n: f64) -> Option<Json> {
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INTEGER {
        // Exact: |n| <= 2^53 and integral, so the cast neither truncates nor saturates.
        #[allow(
            clippy::cast_possible_truncation,
            reason = "checked integral and in range above"
        )]
        return Some(Json::from(n as i64));
    }
    Number::from_f64(n).map(Json::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_json_round_trips() {
        let samples = [
            json!({"cmd": "make", "args": ["-j", 4], "env": {"CI": true, "X": null}, "f": 1.5}),
            json!([1, "two", {"three": 3}]),
            json!("just a string"),
            json!(42),
            json!(-7),
            json!(true),
            json!(null),
            json!({}),
        ];
        for sample in samples {
            assert_eq!(
                value_to_json(json_to_value(sample.clone()), "payload").unwrap(),
                sample
            );
        }
    }

    #[test]
    fn integers_stay_integers_and_non_finite_numbers_are_invalid() {
        let one = prost_types::Value {
            kind: Some(Kind::NumberValue(1.0)),
        };
        assert_eq!(value_to_json(one, "payload").unwrap().to_string(), "1");
        let nan = prost_types::Value {
            kind: Some(Kind::NumberValue(f64::NAN)),
        };
        let err = value_to_json(nan, "payload").unwrap_err();
        assert_eq!(err.violations[0].field, "payload");
        let inf = ListValue {
            values: vec![prost_types::Value {
                kind: Some(Kind::NumberValue(f64::INFINITY)),
            }],
        };
        assert!(
            value_to_json(
                prost_types::Value {
                    kind: Some(Kind::ListValue(inf))
                },
                "x"
            )
            .is_err()
        );
    }

    #[test]
    fn unset_kind_is_null_and_structs_are_objects() {
        assert_eq!(
            value_to_json(prost_types::Value { kind: None }, "x").unwrap(),
            Json::Null
        );
        let Json::Object(map) = json!({"a": {"b": [1]}}) else {
            unreachable!()
        };
        let back = struct_to_json(json_object_to_struct(map.clone()), "x").unwrap();
        assert_eq!(back, map);
    }
}
