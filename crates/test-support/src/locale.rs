//! Generating a glibc locale for a test, safely on a machine that has never
//! had it, with any number of threads and test processes asking at once.
//!
//! `localedef` writing straight to the locale's directory races: two test
//! processes that both see the locale missing both run it, and the second
//! fails ("cannot write output files ... File exists"), or a reader sees a
//! half-written directory. So the locale is generated into a directory of
//! its own, next to the real one, and renamed into place: exactly one rename
//! wins, the others find the locale complete and discard their copy.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, bail};

/// Where glibc looks for locales generated with `localedef --no-archive`
/// (`localedef --help` prints it as the "locale path").
const LOCALE_DIR: &str = "/usr/lib/locale";

/// Serialises the threads of one process; other processes are handled by the
/// rename in [`generate_into`].
static GENERATING: Mutex<()> = Mutex::new(());

/// Makes sure the locale `name` (e.g. `ko_KR.UTF-8`) exists, generating it
/// from glibc's `source` definition (e.g. `ko_KR`) when `locale -a` does
/// not list it.
///
/// # Panics
/// When the locale is missing and cannot be generated (no `locales`
/// package, or not root): the message says what to install.
pub(crate) fn ensure_locale(source: &str, name: &str) {
    let _one_at_a_time = GENERATING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if is_listed(name) {
        return;
    }
    let made = generate_into(source, &Path::new(LOCALE_DIR).join(name));
    // Whoever generated it, it must be there now.
    if let Err(e) = made.and_then(|()| {
        if is_listed(name) {
            Ok(())
        } else {
            bail!("`locale -a` does not list {name} after generating it")
        }
    }) {
        panic!(
            "the {name} locale is missing and could not be generated ({e:#}): \
             install Debian's `locales` package and run the tests as root"
        );
    }
}

/// Whether `locale -a` lists `name`. It spells a locale from the archive
/// `ko_KR.utf8` and one generated as a directory by its directory's name
/// (`ko_KR.UTF-8`), so both sides are compared normalised.
fn is_listed(name: &str) -> bool {
    let normal = |l: &str| l.to_lowercase().replace("utf-8", "utf8");
    let wanted = normal(name);
    std::process::Command::new("locale")
        .arg("-a")
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| normal(l) == wanted)
        })
        .unwrap_or(false)
}

/// Whether `dir` holds a complete compiled locale.
fn is_complete(dir: &Path) -> bool {
    ["LC_CTYPE", "LC_MESSAGES", "LC_IDENTIFICATION"]
        .iter()
        .all(|part| dir.join(part).exists())
}

/// Generates the locale `source` as the directory `target` unless a complete
/// one is there already, through a private directory renamed into place.
/// Safe when other threads or processes do the same at the same moment.
fn generate_into(source: &str, target: &Path) -> anyhow::Result<()> {
    if is_complete(target) {
        return Ok(());
    }
    let parent = target.parent().context("the locale's directory has no parent")?;
    let file_name = target
        .file_name()
        .and_then(|n| n.to_str())
        .context("the locale's directory has no name")?;
    let private: PathBuf = parent.join(format!(
        ".{file_name}.{}.{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let status = std::process::Command::new("localedef")
        .args(["--no-archive", "-i", source, "-f", "UTF-8"])
        .arg(&private)
        .status()
        .context("running localedef")?;
    let generated = if !status.success() {
        Err(anyhow::anyhow!(
            "`localedef --no-archive -i {source} -f UTF-8 {}` exited with {status}",
            private.display()
        ))
    } else {
        // A rename onto a directory that exists and is not empty fails: then
        // another process won, and its copy is the one that stays.
        match std::fs::rename(&private, target) {
            Ok(()) => Ok(()),
            Err(_) if is_complete(target) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("moving the locale to {}", target.display()))),
        }
    };
    let _ = std::fs::remove_dir_all(&private);
    // A failure while another process finished the same locale is no failure.
    match generated {
        Err(_) if is_complete(target) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight generations of one locale at once into a scratch directory: all
    /// succeed, and the one directory that stays is complete. (Written
    /// straight to the target, the losers of the race fail.)
    #[test]
    fn concurrent_generations_all_succeed() {
        let scratch = std::env::temp_dir().join(format!("coffee-locale-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&scratch).expect("scratch directory");
        let target = scratch.join("ko_KR.UTF-8");
        let results: Vec<anyhow::Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| generate_into("ko_KR", &target))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("generation thread"))
                .collect()
        });
        let leftovers: Vec<_> = std::fs::read_dir(&scratch)
            .expect("scratch listing")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        let _ = std::fs::remove_dir_all(&scratch);
        for result in results {
            result.expect("every generation succeeds");
        }
        assert_eq!(leftovers, vec![std::ffi::OsString::from("ko_KR.UTF-8")]);
    }
}
