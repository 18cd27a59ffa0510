//! The model registry.

use super::common::fixture;
use freeze_attn_library::ModelRecord;

#[test]
fn models_are_registered_listed_and_forgotten() {
    let f = fixture();
    let a = ModelRecord {
        fingerprint: "fa".into(),
        display_name: "B model".into(),
        path: "/m/b.gguf".into(),
    };
    let b = ModelRecord {
        fingerprint: "fb".into(),
        display_name: "A model".into(),
        path: "/m/a".into(),
    };
    f.lib.put_model(&a).unwrap();
    f.lib.put_model(&b).unwrap();
    assert_eq!(
        f.lib.models().unwrap(),
        vec![b.clone(), a.clone()],
        "listed by display name"
    );
    assert_eq!(f.lib.model(&"fa".into()).unwrap(), Some(a));
    assert!(f.lib.remove_model(&"fa".into()).unwrap());
    assert_eq!(f.lib.models().unwrap(), vec![b]);
    assert!(f
        .lib
        .put_model(&ModelRecord {
            fingerprint: String::new().into(),
            display_name: "x".into(),
            path: "/x".into()
        })
        .is_err());
}
