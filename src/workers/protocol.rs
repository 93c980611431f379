//! Buildbot's msgpack messages (`master-worker-msgpack.rst`): one msgpack map per binary
//! WebSocket frame, every request carrying an `op` and a `seq_number` that its `response`
//! repeats.

use rmpv::Value;

/// A message map from `(key, value)` pairs.
pub fn map(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(
        fields
            .into_iter()
            .map(|(key, value)| (Value::from(key), value))
            .collect(),
    )
}

pub fn encode(message: &Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, message).expect("writing to a Vec cannot fail");
    bytes
}

/// Decodes one message, which must be a map with an `op`.
pub fn decode(bytes: &[u8]) -> Result<Value, String> {
    let mut reader = bytes;
    let value = rmpv::decode::read_value(&mut reader).map_err(|e| format!("not msgpack: {e}"))?;
    if !reader.is_empty() {
        return Err(format!("{} bytes after the message", reader.len()));
    }
    if field(&value, "op").and_then(Value::as_str).is_none() {
        return Err("the message is not a map with an 'op'".into());
    }
    Ok(value)
}

/// The value under `key` of a map.
pub fn field<'a>(message: &'a Value, key: &str) -> Option<&'a Value> {
    message
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// A JSON value as msgpack, for command arguments.
pub fn from_json(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (_, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(fields) => Value::Map(
            fields
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// A msgpack value as JSON, for the worker's info in the REST API.
pub fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(b) => (*b).into(),
        Value::Integer(i) => i
            .as_i64()
            .map(Into::into)
            .or_else(|| i.as_u64().map(Into::into))
            .unwrap_or(serde_json::Value::Null),
        Value::F32(f) => serde_json::json!(f),
        Value::F64(f) => serde_json::json!(f),
        Value::String(s) => s.as_str().unwrap_or_default().into(),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned().into(),
        Value::Array(items) => items.iter().map(to_json).collect(),
        Value::Map(fields) => fields
            .iter()
            .map(|(k, v)| (text(k), to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Value::Ext(_, _) => serde_json::Value::Null,
    }
}

/// A string or bytes value as text (a worker sends output as str, file data as bytes).
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_encoding_and_a_map_without_op_is_refused() {
        let message = map(vec![("op", "print".into()), ("seq_number", 3.into())]);
        let decoded = decode(&encode(&message)).unwrap();
        assert_eq!(
            field(&decoded, "seq_number").and_then(Value::as_i64),
            Some(3)
        );
        assert!(decode(&encode(&Value::from(5))).is_err());
        assert!(decode(&[0xc1]).is_err());
    }
}
