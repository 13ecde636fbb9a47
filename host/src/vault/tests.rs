//! Unit tests of the vault: sealing, the bindings of the associated data,
//! key versions and rotation, on real sled in a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    storage: Storage,
    source: VaultKeySource,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.key");
    MasterKey::create_file(&path).unwrap();
    let storage = Storage::open(&dir.path().join("db")).unwrap();
    Fixture {
        dir,
        storage,
        source: VaultKeySource::File(path),
    }
}

fn key(tenant: &str, subject: &str, provider: &str) -> RecordKey {
    RecordKey {
        tenant: tenant.into(),
        issuer: "https://idp.test".into(),
        subject: subject.into(),
        provider: provider.into(),
    }
}

fn tokens(access: &str) -> TokenSet {
    TokenSet {
        access_token: Secret::new(access.into()),
        refresh_token: Some(Secret::new(format!("{access}-refresh"))),
        expires_at: Some(1_900_000_000),
        scopes: vec!["repo".into()],
    }
}

#[test]
fn roundtrip_keeps_created_at_and_list_shows_metadata() {
    let f = fixture();
    let vault = Vault::open(&f.storage, &f.source).unwrap();
    let k = key("acme", "alice", "github");
    assert!(vault.get(&k).unwrap().is_none());
    vault.put(&k, &tokens("at-1")).unwrap();
    let got = vault.get(&k).unwrap().unwrap();
    assert_eq!(got.access_token.expose(), "at-1");
    assert_eq!(got.refresh_token.unwrap().expose(), "at-1-refresh");
    assert_eq!(got.scopes, vec!["repo".to_string()]);
    let listed = vault.list("acme", None).unwrap();
    assert_eq!(listed.len(), 1);
    let created = listed[0].created_at;
    vault.put(&k, &tokens("at-2")).unwrap();
    let listed = vault.list("acme", Some("alice")).unwrap();
    assert_eq!(listed[0].created_at, created);
    assert_eq!(listed[0].key_version, 1);
    assert!(listed[0].has_refresh_token);
    assert!(vault.list("acme", Some("bob")).unwrap().is_empty());
    assert!(vault.list("acm", None).unwrap().is_empty());
    assert!(vault.remove(&k).unwrap());
    assert!(!vault.remove(&k).unwrap());
    assert!(vault.get(&k).unwrap().is_none());
}

#[test]
fn a_record_moved_or_relabelled_does_not_open() {
    let f = fixture();
    let vault = Vault::open(&f.storage, &f.source).unwrap();
    let alice = key("acme", "alice", "github");
    vault.put(&alice, &tokens("secret-at")).unwrap();
    vault
        .put(&key("globex", "x", "y"), &tokens("other"))
        .unwrap();
    let bytes = vault
        .store
        .get(Space::Records, &alice.encode())
        .unwrap()
        .unwrap();
    let elsewhere = [
        key("acme", "bob", "github"),
        key("acme", "alice", "gitlab"),
        key("globex", "alice", "github"),
        RecordKey {
            issuer: "https://other.test".into(),
            ..alice.clone()
        },
    ];
    for other in &elsewhere {
        vault
            .store
            .put(Space::Records, &other.encode(), &bytes)
            .unwrap();
        let err = vault.get(other).unwrap_err().to_string();
        assert!(err.contains("does not open"), "{err}");
        assert!(!err.contains("secret-at"), "{err}");
    }
    // Relabelled with another key version, and with changed metadata.
    let text = String::from_utf8(bytes.clone()).unwrap();
    vault.rotate_tenant_key("acme").unwrap();
    let current = vault
        .store
        .get(Space::Records, &alice.encode())
        .unwrap()
        .unwrap();
    let current = String::from_utf8(current).unwrap();
    for tampered in [
        current.replace("\"key_version\":2", "\"key_version\":1"),
        current.replace("\"repo\"", "\"admin\""),
        text.clone(),
    ] {
        vault
            .store
            .put(Space::Records, &alice.encode(), tampered.as_bytes())
            .unwrap();
        assert!(vault.get(&alice).is_err(), "{tampered}");
    }
}

#[test]
fn tampered_ciphertext_does_not_open() {
    let f = fixture();
    let vault = Vault::open(&f.storage, &f.source).unwrap();
    let k = key("acme", "alice", "github");
    vault.put(&k, &tokens("at")).unwrap();
    let bytes = vault
        .store
        .get(Space::Records, &k.encode())
        .unwrap()
        .unwrap();
    let mut doc: RecordDoc = serde_json::from_slice(&bytes).unwrap();
    let mut raw = hex::decode(&doc.sealed.ciphertext).unwrap();
    raw[0] ^= 1;
    doc.sealed.ciphertext = hex::encode(raw);
    vault
        .store
        .put(
            Space::Records,
            &k.encode(),
            &serde_json::to_vec(&doc).unwrap(),
        )
        .unwrap();
    let err = vault.get(&k).unwrap_err();
    assert!(matches!(err, VaultError::Undecryptable { .. }), "{err}");
}

#[test]
fn keys_with_separators_stay_apart() {
    let f = fixture();
    let vault = Vault::open(&f.storage, &f.source).unwrap();
    let a = key("a\",\"b", "c", "d");
    let b = key("a", "b\",\"c", "d");
    vault.put(&a, &tokens("one")).unwrap();
    vault.put(&b, &tokens("two")).unwrap();
    assert_eq!(vault.get(&a).unwrap().unwrap().access_token.expose(), "one");
    assert_eq!(vault.get(&b).unwrap().unwrap().access_token.expose(), "two");
    assert_eq!(vault.list("a", None).unwrap().len(), 1);
}

#[test]
fn secrets_roundtrip_and_are_bound_to_their_name() {
    let f = fixture();
    let vault = Vault::open(&f.storage, &f.source).unwrap();
    vault
        .put_secret("acme", "github-client", &Secret::new("s3cret".into()))
        .unwrap();
    assert_eq!(
        vault
            .secret("acme", "github-client")
            .unwrap()
            .unwrap()
            .expose(),
        "s3cret"
    );
    assert!(vault.secret("acme", "nope").unwrap().is_none());
    let bytes = vault
        .store
        .get(Space::Secrets, &secret_key("acme", "github-client"))
        .unwrap()
        .unwrap();
    vault
        .store
        .put(Space::Secrets, &secret_key("acme", "other"), &bytes)
        .unwrap();
    assert!(vault.secret("acme", "other").is_err());
    // The planted copy cannot be re-sealed; it is skipped and stays shut.
    assert_eq!(vault.rotate_tenant_key("acme").unwrap(), 1);
    assert!(vault.secret("acme", "other").is_err());
    assert!(vault.secret("acme", "github-client").is_ok());
}

#[test]
fn rotations_reseal_and_the_new_key_file_opens() {
    let f = fixture();
    let k = key("acme", "alice", "github");
    {
        let vault = Vault::open(&f.storage, &f.source).unwrap();
        vault.put(&k, &tokens("at")).unwrap();
        assert_eq!(vault.rotate_tenant_key("acme").unwrap(), 1);
        assert_eq!(vault.key_versions("acme"), vec![2]);
        assert_eq!(vault.list("acme", None).unwrap()[0].key_version, 2);
        let before = vault.master_fingerprint();
        vault.rotate_master_key().unwrap();
        assert_ne!(vault.master_fingerprint(), before);
        assert!(vault.get(&k).unwrap().is_some());
    }
    let vault = Vault::open(&f.storage, &f.source).unwrap();
    assert_eq!(vault.get(&k).unwrap().unwrap().access_token.expose(), "at");
    let doc = vault.read().doc.clone();
    assert_eq!(doc.masters.len(), 1);
    assert_eq!(doc.tenants["acme"].versions.len(), 1);
    assert!(!master::temp_path(&f.dir.path().join("vault.key")).exists());
}

#[test]
fn an_environment_key_does_not_rotate_and_a_missing_one_is_named() {
    let f = fixture();
    let master = MasterKey::load(&f.source).unwrap();
    let store = Arc::new(StorageVaultStore::new(&f.storage).unwrap());
    let source = VaultKeySource::Env("AIRLOCK_VAULT_TEST_KEY".into());
    let vault = Vault::open_store(store, &source, master).unwrap();
    let err = vault.rotate_master_key().unwrap_err().to_string();
    assert!(
        err.contains("AIRLOCK_VAULT_TEST_KEY") && err.contains("key file"),
        "{err}"
    );
    let missing = Vault::open(
        &f.storage,
        &VaultKeySource::Env("AIRLOCK_VAULT_TEST_KEY_UNSET".into()),
    );
    let err = missing.unwrap_err().to_string();
    assert!(err.contains("AIRLOCK_VAULT_TEST_KEY_UNSET"), "{err}");
}
