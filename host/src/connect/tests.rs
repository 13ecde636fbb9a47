use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::storage::Storage;

fn connector(dir: &std::path::Path) -> Connector {
    let text = format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1:9\"\ndata_dir = {dir:?}\n\
         [vault]\nmaster_key_file = \"vault.key\"\n\
         [tenants.acme]\nissuers = [{{ issuer = \"http://127.0.0.1:9/iss\" }}]\n\
         [tenants.acme.connect]\nclient_id = \"c\"\n\
         authorization_endpoint = \"http://127.0.0.1:9/a\"\ntoken_endpoint = \"http://127.0.0.1:9/t\"\n\
         [tenants.acme.providers.calendar]\nauthorization_endpoint = \"http://127.0.0.1:9/pa\"\n\
         token_endpoint = \"http://127.0.0.1:9/pt\"\nclient_id = \"p\"\n",
        dir = dir.display().to_string()
    );
    let config = Config::parse(&text, std::path::Path::new("t.toml"), dir).unwrap();
    crate::vault::MasterKey::create_file(&dir.join("vault.key")).unwrap();
    let storage = Storage::open(&dir.join("db")).unwrap();
    let vault = Arc::new(Vault::open(&storage, &config.vault_key).unwrap());
    let edge = Arc::new(Edge::new(Arc::new(config.clone())).unwrap());
    Connector::new(&config, edge, vault).unwrap()
}

fn key(subject: &str, provider: &str) -> RecordKey {
    RecordKey {
        tenant: "acme".into(),
        issuer: "http://127.0.0.1:9/iss".into(),
        subject: subject.into(),
        provider: provider.into(),
    }
}

#[test]
fn a_link_is_reused_per_user_and_provider_and_carries_nothing_personal() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path());
    let alice = c.begin(&key("alice", "calendar")).unwrap();
    assert_eq!(c.begin(&key("alice", "calendar")).unwrap(), alice);
    let bob = c.begin(&key("bob", "calendar")).unwrap();
    assert_ne!(bob.url, alice.url);
    assert_ne!(bob.id, alice.id);
    let id = alice
        .url
        .strip_prefix("http://127.0.0.1:9/connect/acme/")
        .unwrap();
    assert!(id.len() >= 43 && !id.contains("alice") && !id.contains("calendar"));
    assert!(
        c.begin(&key("alice", "nope")).is_err(),
        "an unknown provider"
    );
    // An expired link is replaced, not handed out again.
    lock(&c.in_flight)
        .pending
        .values_mut()
        .for_each(|p| p.expires = Instant::now());
    let again = c.begin(&key("alice", "calendar")).unwrap();
    assert_ne!(again.url, alice.url);
    assert_eq!(
        lock(&c.in_flight).pending.len(),
        1,
        "the expired ones are gone"
    );
}

#[test]
fn watchers_run_once_when_their_elicitation_completes() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path());
    let runs = Arc::new(AtomicU32::new(0));
    // Two sessions; the second retried, and waits once.
    for waiter in ["s0", "s1", "s1"] {
        let runs = runs.clone();
        c.watch(
            "e1",
            waiter,
            Box::new(move || {
                runs.fetch_add(1, Ordering::SeqCst);
            }),
        );
    }
    c.complete("other");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    c.complete("e1");
    c.complete("e1");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn in_flight_links_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let c = connector(dir.path());
    for i in 0..MAX_IN_FLIGHT {
        c.begin(&key(&format!("user{i}"), "calendar")).unwrap();
    }
    let refused = c.begin(&key("one-too-many", "calendar")).unwrap_err();
    assert!(refused.contains("too many"), "{refused}");
}
