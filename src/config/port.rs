use std::fmt;

use mlua::{Lua, Value};

use super::kwargs::{mismatch, FromOption, OptionError};

/// A listening port: a number, or a Twisted strports string `tcp:PORT[:interface=ADDR]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub port: u16,
    /// The address to bind; all interfaces when absent.
    pub interface: Option<String>,
}

impl PortSpec {
    pub fn parse(spec: &str) -> Result<PortSpec, String> {
        if let Ok(port) = spec.parse::<u16>() {
            return Ok(PortSpec {
                port,
                interface: None,
            });
        }
        let rest = spec.strip_prefix("tcp:").ok_or_else(|| {
            format!("'{spec}' is not a port (use 8010 or 'tcp:8010:interface=127.0.0.1')")
        })?;
        let mut parts = rest.split(':');
        let port = parts
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| format!("'{spec}' has no valid port number"))?;
        let mut interface = None;
        for part in parts {
            match part.split_once('=') {
                Some(("interface", addr)) => interface = Some(addr.to_string()),
                Some(("port", p)) => {
                    return Err(format!(
                        "'{spec}': give the port once, not also as port={p}"
                    ));
                }
                _ => {
                    return Err(format!(
                        "'{spec}': unknown port parameter '{part}' (only interface= is supported)"
                    ))
                }
            }
        }
        Ok(PortSpec { port, interface })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.interface {
            Some(interface) => write!(f, "tcp:{}:interface={interface}", self.port),
            None => write!(f, "{}", self.port),
        }
    }
}

impl FromOption for PortSpec {
    fn expected() -> String {
        "a port number or 'tcp:PORT:interface=ADDR'".into()
    }
    fn from_option(value: Value, lua: &Lua) -> Result<Self, OptionError> {
        match &value {
            Value::String(s) => PortSpec::parse(&s.to_string_lossy()).map_err(OptionError::Wrong),
            Value::Integer(_) | Value::Number(_) => u16::from_option(value.clone(), lua)
                .map(|port| PortSpec {
                    port,
                    interface: None,
                })
                .map_err(|_| mismatch::<Self>(&value)),
            _ => Err(mismatch::<Self>(&value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_strports() {
        assert_eq!(
            PortSpec::parse("8010").unwrap(),
            PortSpec {
                port: 8010,
                interface: None
            }
        );
        assert_eq!(
            PortSpec::parse("tcp:8010:interface=127.0.0.1").unwrap(),
            PortSpec {
                port: 8010,
                interface: Some("127.0.0.1".into())
            }
        );
        assert!(PortSpec::parse("unix:/tmp/sock")
            .unwrap_err()
            .contains("is not a port"));
        assert!(PortSpec::parse("tcp:x")
            .unwrap_err()
            .contains("no valid port"));
        assert!(PortSpec::parse("tcp:1:backlog=5")
            .unwrap_err()
            .contains("backlog=5"));
    }
}
