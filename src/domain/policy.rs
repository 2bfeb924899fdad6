//! Deployment-wide choices the core acts on: the environment's strictness and the signature
//! algorithm of new keys. Set by configuration; defined here so that the core needs no config.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the service runs, which decides how strict issuance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Development and testing: IP restriction optional, scope `all` allowed, master key file generated.
    #[default]
    Test,
    /// Production: tokens must be IP-restricted, `all` is refused, a master key must be configured.
    Production,
}

/// The signature algorithms tokenmint signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8037), the default.
    #[default]
    EdDSA,
    /// ECDSA on P-256 with SHA-256.
    ES256,
}

impl KeyAlgorithm {
    /// The JWS `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }

    /// Parses a JWS `alg` name (only the two we sign with).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            _ => None,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
