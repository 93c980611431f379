use std::collections::BTreeMap;

use serde_json::Value;

/// Build properties: each value remembers where it came from (`"Builder"`, `"Scheduler"`,
/// `"Change"`, ...), as Buildbot's `Properties` does, because users look at the source when
/// a property has an unexpected value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Properties {
    entries: BTreeMap<String, (Value, String)>,
}

impl Properties {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds properties from `(name, value)` pairs that all share one source.
    pub fn from_pairs<I, K>(pairs: I, source: &str) -> Self
    where
        I: IntoIterator<Item = (K, Value)>,
        K: Into<String>,
    {
        let mut props = Self::new();
        for (name, value) in pairs {
            props.set(name, value, source);
        }
        props
    }

    pub fn set(&mut self, name: impl Into<String>, value: Value, source: &str) {
        self.entries
            .insert(name.into(), (value, source.to_string()));
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries.get(name).map(|(value, _)| value)
    }

    pub fn source(&self, name: &str) -> Option<&str> {
        self.entries.get(name).map(|(_, source)| source.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Name to value, the shape `asDict` and the REST API use for values alone.
    pub fn values(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries
            .iter()
            .map(|(name, (value, _))| (name.as_str(), value))
    }

    /// Name to `[value, source]`, Buildbot's `Properties.asDict()` shape.
    pub fn as_dict(&self) -> BTreeMap<String, (Value, String)> {
        self.entries.clone()
    }

    /// Copies every property of `other` over this one (later layers win, as in Buildbot).
    pub fn update(&mut self, other: &Properties) {
        for (name, entry) in &other.entries {
            self.entries.insert(name.clone(), entry.clone());
        }
    }
}
