//! Verifies one token offline against a running tokenmint and prints its claims or why it was
//! refused.
//!
//! ```sh
//! cargo run -p tokenmint-verify --example verify_token -- http://127.0.0.1:50051 <token>
//! ```
//!
//! The first argument is the tokenmint gRPC endpoint (keys via `GetJwks`), or the URL of a JWKS
//! document (anything containing `/.well-known/` or ending in `.json`, fetched over HTTP). The
//! exit status is 0 for a valid token, 1 for a refused one, 2 for a usage or key-source error.

use std::process::ExitCode;

use tokenmint_verify::{JwksSource, Verifier, VerifyError};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, token] = args.as_slice() else {
        eprintln!("usage: verify_token <tokenmint endpoint | JWKS URL> <token>");
        return ExitCode::from(2);
    };
    let source = if source.contains("/.well-known/") || source.ends_with(".json") {
        JwksSource::http(source.as_str())
    } else {
        JwksSource::grpc(source.as_str())
    };
    let verifier = match Verifier::builder(source).build().await {
        Ok(verifier) => verifier,
        Err(error) => {
            eprintln!("cannot get the keys: {error}");
            return ExitCode::from(2);
        }
    };
    match verifier.verify(token.trim()).await {
        Ok(claims) => {
            println!("valid token");
            println!("  sub        {}", claims.sub);
            println!("  jti        {}", claims.jti);
            println!("  scope      {}", claims.scope.join(" "));
            println!("  admin      {}", claims.adm);
            println!("  enterprise {}", claims.ent.as_deref().unwrap_or("-"));
            println!("  template   {}", claims.tpl.as_deref().unwrap_or("-"));
            let ips = if claims.ips.is_empty() {
                "any".to_owned()
            } else {
                claims.ips.join(", ")
            };
            println!("  ips        {ips}");
            println!("  iat/nbf    {} / {}", claims.iat, claims.nbf);
            println!("  exp        {}", claims.exp);
            ExitCode::SUCCESS
        }
        Err(error @ (VerifyError::KeySource(_) | VerifyError::Introspection(_))) => {
            eprintln!("cannot verify: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            println!("refused: {} ({error})", error.as_str());
            ExitCode::from(1)
        }
    }
}
