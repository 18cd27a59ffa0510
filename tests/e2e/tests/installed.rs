//! The app as a user installs it: the `.deb` that `scripts/build-deb` makes, installed with the
//! system's package manager, launched from `/usr/bin` under Xvfb. It starts on the default model,
//! answers a chat message, freezes it into the library, and a screenshot of it goes to
//! docs/screenshots/.
//!
//! Run through `scripts/deb-test` (installs the package, sets FREEZE_ATTN_APP to the installed
//! binary and a scratch data folder); not by `scripts/e2e`.

use freeze_attn_e2e::{env_path, repo_root, tid, Driver, Session};
use freeze_attn_library::{Library, NodeOrder};

#[test]
fn the_installed_package_starts_chats_and_freezes() {
    let app = env_path("FREEZE_ATTN_APP", "the installed app (scripts/deb-test sets it)");
    assert!(
        app.starts_with("/usr"),
        "{} is not an installed binary: run this through scripts/deb-test",
        app.display()
    );
    let home = env_path("FREEZE_ATTN_HOME", "a scratch data folder (scripts/deb-test sets it)");
    let shots = repo_root().join("docs/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let driver = Driver::start(4444).unwrap();
    let s = Session::new(&driver, &app).unwrap();
    let result = (|| -> freeze_attn_e2e::Result<()> {
        s.until("the model to load", 180, || {
            Ok(s.text(&tid("status-model"))? == "SmolLM2-135M-Instruct")
        })?;
        let reply = s.chat("Hello! What is the capital of France?", 1)?;
        assert!(reply.len() > 5, "the installed app's model replied: {reply:?}");
        s.freeze_as("Installed", None)?;
        let lib_dir = home.join("library");
        s.until("the frozen node in the library", 60, || {
            Ok(Library::open(&lib_dir)
                .and_then(|l| l.tree(NodeOrder::Created))
                .map(|t| t.iter().any(|e| e.node.name == "Installed"))
                .unwrap_or(false))
        })?;
        s.screenshot(&shots.join("12-installed-deb.png"))?;
        Ok(())
    })();
    s.close();
    result.unwrap();
}
