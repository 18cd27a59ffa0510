//! The session host: the engine thread every front end drives a session through (the app,
//! `freeze-attn chat`, the server). Jobs run in order on one thread; `status` and `cancel`
//! answer while a job runs; a model that fails to open is reported by every call.

use freeze_attn::engine::{DeviceChoice, Event, FinishReason, GenerateParams};
use freeze_attn::session::Session;
use freeze_attn::{tree, Library, NodeKind, SessionHost};
use std::sync::Arc;

fn host(dir: &std::path::Path) -> SessionHost {
    let dir = dir.to_path_buf();
    SessionHost::start(move || {
        let model = freeze_attn::open_model("default", DeviceChoice::Cpu)?;
        Session::new(model, Library::open(&dir)?)
    })
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn status_answers_while_a_generation_runs_and_cancel_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = Arc::new(host(dir.path()));
    let idle = block_on(h.status()).unwrap();
    assert!(!idle.busy, "nothing runs yet");
    assert_eq!(idle.params, GenerateParams::default(), "the one set of defaults");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let h2 = h.clone();
    let job = std::thread::spawn(move || {
        h2.run_blocking(move |s| {
            s.start_live(NodeKind::Story, None);
            let mut tx = Some(tx);
            s.continue_text(
                "The old lighthouse keeper climbed the stairs every evening, and",
                &GenerateParams::greedy(100_000),
                &mut |e| {
                    if let Event::Text(_) = e {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                    }
                },
            )
        })
    });
    rx.recv().expect("the generation streams text");
    let busy = block_on(h.status()).unwrap();
    assert!(
        busy.busy,
        "status answers from outside the engine thread while a job runs"
    );
    h.cancel();
    let reply = job.join().unwrap().unwrap();
    assert_eq!(
        reply.finish,
        FinishReason::Cancelled,
        "cancel stops the running generation"
    );
    assert!(reply.tokens < 100_000);
    let after = block_on(h.status()).unwrap();
    assert!(!after.busy);
    assert_eq!(
        after.live.token_count, reply.live.token_count,
        "the live state keeps what was generated before the cancel"
    );
    // The next job is not cancelled by the earlier stop.
    let next = h
        .run_blocking(|s| s.continue_text(" then", &GenerateParams::greedy(3), &mut |_| {}))
        .unwrap();
    assert_eq!(next.tokens, 3, "a later generation runs to its limit");
}

#[test]
fn bad_settings_are_refused_and_the_old_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path());
    let mut bad = GenerateParams::default();
    bad.sampling.top_p = 0.0;
    let e = block_on(h.set_params(bad)).unwrap_err();
    assert_eq!(e.code(), "bad_sampling", "{e}");
    let mut good = GenerateParams::default();
    good.sampling.temperature = 0.2;
    assert_eq!(block_on(h.set_params(good.clone())).unwrap(), good);
    assert_eq!(
        block_on(h.status()).unwrap().params,
        good,
        "saved settings are the defaults now"
    );
}

#[test]
fn a_model_that_fails_to_open_is_reported_by_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model.gguf");
    let m = missing.clone();
    let h = SessionHost::start(move || Session::open(&m.to_string_lossy(), DeviceChoice::Cpu));
    let e = block_on(h.status()).unwrap_err();
    assert_ne!(e.code(), "no_model", "the failure's own code is kept: {e}");
    assert!(
        e.to_string().contains("no-such-model.gguf"),
        "the message names the file: {e}"
    );
    let again = h.run_blocking(|s| Ok(s.live())).unwrap_err();
    assert_eq!(again.to_string(), e.to_string(), "every call says the same");
    let open = block_on(h.open_model(missing.to_string_lossy().into_owned(), DeviceChoice::Cpu));
    assert!(open.is_err(), "opening the same missing file fails again");
}

#[test]
fn opening_a_model_reports_the_bytes_of_weights_read() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let path = freeze_attn::resolve_model("default").unwrap();
    let info = block_on(
        h.open_model_with_progress(path.to_string_lossy().into_owned(), DeviceChoice::Cpu, move |p| {
            s2.lock().unwrap().push(p)
        }),
    )
    .unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.len() > 10, "progress along the way: {} reports", seen.len());
    assert!(
        seen.windows(2).all(|w| w[0].done_bytes <= w[1].done_bytes),
        "it only grows"
    );
    let last = seen.last().unwrap();
    assert_eq!(last.done_bytes, last.total_bytes, "it ends complete");
    assert!(
        last.total_bytes > info.bytes / 2 && last.total_bytes <= info.bytes,
        "{last:?} of {}",
        info.bytes
    );
}

#[test]
fn nodes_resolve_by_id_or_unique_name() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path());
    let (a, b, c) = h
        .run_blocking(|s| {
            s.start_live(NodeKind::Story, None);
            s.continue_text("Once", &GenerateParams::greedy(1), &mut |_| {})?;
            let a = s.freeze("Harbour", NodeKind::Story)?;
            s.continue_text(" more", &GenerateParams::greedy(1), &mut |_| {})?;
            let b = s.freeze("twin", NodeKind::Story)?;
            s.continue_text(" again", &GenerateParams::greedy(1), &mut |_| {})?;
            let c = s.freeze("twin", NodeKind::Story)?;
            Ok((a.id, b.id, c.id))
        })
        .unwrap();
    let lib = Library::open(dir.path()).unwrap();
    assert_eq!(tree::resolve(&lib, &a.to_string()).unwrap().0, a, "by id");
    assert_eq!(tree::resolve(&lib, "harbour").unwrap().0, a, "by name, any case");
    let e = tree::resolve(&lib, "twin").unwrap_err();
    assert_eq!(e.code(), "ambiguous_name");
    assert!(
        e.to_string().contains(&b.to_string()) && e.to_string().contains(&c.to_string()),
        "an ambiguous name lists the ids to choose from: {e}"
    );
    let e = tree::resolve(&lib, "nowhere").unwrap_err();
    assert_eq!(
        (e.code(), e.to_string()),
        ("node_not_found", "no node is named `nowhere`".into())
    );
    let e = tree::resolve(&lib, "999999").unwrap_err();
    assert_eq!(e.code(), "node_not_found");
}
