//! PostgreSQL over TLS: the throw-away server of scripts/lib.sh runs with `ssl=on` and a
//! certificate from a CA generated there; `MUSUBI_TEST_POSTGRES_TLS` asks for
//! `sslmode=verify-full` against that CA. The store connects over TLS, and refuses a server
//! whose certificate does not chain to the root it was given.

use musubi_store::{Store, TokenRow};

fn tls_url() -> String {
    std::env::var("MUSUBI_TEST_POSTGRES_TLS").expect(
        "MUSUBI_TEST_POSTGRES_TLS is not set: run scripts/test (or source scripts/lib.sh; pg_start), which starts PostgreSQL with TLS and sets it",
    )
}

/// A fresh database (made over the plain loopback connection), and the TLS URL to it.
struct FreshDb {
    admin: String,
    name: String,
    url: String,
}

impl FreshDb {
    fn new() -> FreshDb {
        let admin = std::env::var("MUSUBI_TEST_POSTGRES").expect("MUSUBI_TEST_POSTGRES is not set: run scripts/test");
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("musubi_pg_tls_{}_{}", std::process::id(), t % 1_000_000_000_000);
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let url = tls_url().replacen("/postgres?", &format!("/{name}?"), 1);
        assert!(url.contains(&name), "MUSUBI_TEST_POSTGRES_TLS must name the database postgres: {url}");
        FreshDb { admin, name, url }
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

#[test]
fn the_store_connects_over_verified_tls() {
    let url = tls_url();
    assert!(url.contains("sslmode=verify-full"), "{url}");
    // The connection really is encrypted (the server's own view of it).
    let (plain, tls) = musubi_store::pg_tls::split(&url, None).unwrap();
    let tls = tls.unwrap();
    assert_eq!(tls.verify, musubi_store::pg_tls::Verify::Full);
    let mut config: postgres::Config = plain.parse().unwrap();
    config.ssl_mode(postgres::config::SslMode::Require);
    let mut client = config.connect(musubi_store::pg_tls::connector(&tls).unwrap()).unwrap();
    let row = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).unwrap();
    assert!(row.get::<_, bool>(0), "the session is not encrypted");

    // The whole store over TLS: migrations, a write through the writer, a read through the pool.
    let db = FreshDb::new();
    let store = Store::open_postgres(&db.url).unwrap();
    store
        .insert_token(TokenRow {
            token_hash: "h".into(),
            kind: "system".into(),
            facility: Some("1318814790".into()),
            name: "emr".into(),
            created: 1,
            revoked: false,
            expires: Some(2),
        })
        .unwrap();
    assert_eq!(store.read(|r| r.token("h")).unwrap().unwrap().expires, Some(2));
}

#[test]
fn a_server_certificate_from_another_ca_is_refused() {
    let url = tls_url();
    let wrong = url.replace("/ca.pem", "/other-ca.pem");
    assert_ne!(url, wrong, "the test expects sslrootcert=…/ca.pem with other-ca.pem beside it");
    let Err(err) = Store::open_postgres(&wrong) else {
        panic!("a server certified by another CA must be refused");
    };
    let msg = err.to_string();
    assert!(msg.contains("postgres connect"), "{msg}");

    // A host name the certificate does not carry (the address is still the server's):
    // verify-full refuses it, verify-ca (the chain only) accepts it.
    let other_name = url.replacen("@localhost:", "@musubi-db.invalid:", 1);
    assert_ne!(url, other_name, "the test expects the URL's host to be localhost");
    assert!(Store::open_postgres(&other_name).is_err(), "verify-full must check the host name");
    let db = FreshDb::new();
    let chain_only = db.url.replacen("@localhost:", "@musubi-db.invalid:", 1).replace("verify-full", "verify-ca");
    assert!(Store::open_postgres(&chain_only).is_ok(), "verify-ca checks the chain, not the name");

    // And a TLS mode without a root to verify with is refused before connecting.
    let no_root = url.split("&sslrootcert=").next().unwrap().to_owned();
    let err = musubi_store::pg_tls::split(&no_root, None).unwrap_err();
    assert!(err.to_string().contains("sslrootcert"), "{err}");
}
