//! The wasmtime engine every policy runs in, its linker, the epoch ticker that enforces hook
//! deadlines, and the on-disk cache of precompiled components.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::bundle::MAX_MEMORY_MIB;
use super::host::{HostServices, PolicyCtx};

use super::meter::EPOCH_TICK;

/// Settings of a [`PolicyEngine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where precompiled components are kept. `None` compiles in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Upper bound of live policy instances across all policies (pooling allocator slots).
    pub max_instances: u32,
    /// Deadline of each admission call (instantiate, `describe`, `validate-config`, each probe):
    /// a one-time check that the policy terminates, so generous enough that a slow first
    /// instantiation on a loaded machine passes. A policy whose own `deadline-ms` is longer
    /// gets that instead.
    pub admission_deadline: Duration,
}

/// The admission deadline unless `IRONHOST_ADMISSION_DEADLINE_MS` says otherwise.
pub const DEFAULT_ADMISSION_DEADLINE: Duration = Duration::from_millis(1000);
/// The longest admission deadline `IRONHOST_ADMISSION_DEADLINE_MS` may set.
pub const MAX_ADMISSION_DEADLINE_MS: u64 = 60_000;

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            cache_dir: default_cache_dir(),
            max_instances: 1000,
            admission_deadline: DEFAULT_ADMISSION_DEADLINE,
        }
    }
}

impl EngineOptions {
    /// No disk cache and room for `max_instances` live instances: for tests, benchmarks and
    /// one-off runs that must not touch the user's cache.
    pub fn in_memory(max_instances: u32) -> EngineOptions {
        EngineOptions {
            cache_dir: None,
            max_instances,
            admission_deadline: DEFAULT_ADMISSION_DEADLINE,
        }
    }

    /// The defaults with `IRONHOST_ADMISSION_DEADLINE_MS` applied; an unusable value is an
    /// error naming the variable and the reason.
    pub fn from_env() -> Result<EngineOptions, String> {
        let mut options = EngineOptions::default();
        if let Some(v) = std::env::var_os("IRONHOST_ADMISSION_DEADLINE_MS") {
            options.admission_deadline = parse_admission_deadline(&v.to_string_lossy())?;
        }
        Ok(options)
    }
}

/// Parse an admission deadline in milliseconds (1..=[`MAX_ADMISSION_DEADLINE_MS`]).
pub fn parse_admission_deadline(value: &str) -> Result<Duration, String> {
    let ms: u64 = value.trim().parse().map_err(|_| {
        format!("IRONHOST_ADMISSION_DEADLINE_MS: `{value}` is not a whole number of milliseconds")
    })?;
    if ms == 0 || ms > MAX_ADMISSION_DEADLINE_MS {
        return Err(format!(
            "IRONHOST_ADMISSION_DEADLINE_MS: {ms} is out of range 1..={MAX_ADMISSION_DEADLINE_MS}"
        ));
    }
    Ok(Duration::from_millis(ms))
}

/// `$IRONHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/ironhost`, else `~/.cache/ironhost`.
///
/// Never a directory under the working directory: a precompiled component is native code, so
/// the cache must be private to the user (see [`private_dir`]), and a project directory can
/// come from anywhere.
pub fn default_cache_dir() -> Option<PathBuf> {
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("IRONHOST_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("ironhost")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("ironhost")))
}

/// Create `dir` (mode 0700) if needed and check that it is private: owned by this user and not
/// writable by anyone else. Anyone who can write the cache can run native code in the host.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create it: {e}"))?;
        let meta = std::fs::metadata(dir).map_err(|e| e.to_string())?;
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "it is writable by other users (mode {:o}); run `chmod go-w` on it",
                meta.mode() & 0o777
            ));
        }
        // Whoever we are, a file we create is owned by us.
        let probe = dir.join(format!(".owner-check-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(|e| format!("cannot write to it: {e}"))?;
        let mine = std::fs::metadata(&probe).map(|m| m.uid());
        let _ = std::fs::remove_file(&probe);
        if mine.map_err(|e| e.to_string())? != meta.uid() {
            return Err("it is owned by another user".to_owned());
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))?;
    Ok(())
}

/// Why the engine could not be set up or could not compile a component.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot configure the WebAssembly engine: {0}")]
    Setup(String),
    #[error("cannot compile component: {0}")]
    Compile(String),
}

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileSource {
    /// Already compiled in this process.
    Memory,
    /// Loaded precompiled from the disk cache.
    DiskCache,
    /// Compiled now (and written to the disk cache if there is one).
    Compiled,
}

/// The engine shared by every policy of a host. Cheap to clone.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<PolicyCtx>,
    services: HostServices,
    cache_dir: Option<PathBuf>,
    compat: String,
    compiled: Mutex<HashMap<[u8; 32], Component>>,
    ticker_stop: Arc<AtomicBool>,
    admission_deadline: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("cache_dir", &self.inner.cache_dir)
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Build an engine with the pooling allocator, epoch interruption and the host imports.
    pub fn new(
        options: EngineOptions,
        services: HostServices,
    ) -> Result<PolicyEngine, EngineError> {
        let setup = |e: wasmtime::Error| EngineError::Setup(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::new();
        let slots = options.max_instances.max(8);
        pool.total_component_instances(slots)
            // A Rust wasm32-wasip2 component holds a handful of core instances (the program,
            // the WASI adapter and small shims), each with at most one memory and table.
            .max_core_instances_per_component(32)
            .total_core_instances(slots * 8)
            .max_memories_per_component(4)
            .total_memories(slots * 2)
            .max_tables_per_component(8)
            .total_tables(slots * 8)
            .max_memory_size((MAX_MEMORY_MIB as usize) << 20)
            .total_stacks(slots);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(setup)?;

        let mut linker = Linker::new(&engine);
        super::sandbox::add_to_linker(&mut linker).map_err(setup)?;
        super::bindings::add_to_linker(&mut linker).map_err(setup)?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat = format!("{:016x}", hasher.finish());

        let cache_dir = options.cache_dir.and_then(|d| {
            let versioned = d.join(&compat);
            match private_dir(&d).and_then(|()| private_dir(&versioned)) {
                Ok(()) => Some(d),
                Err(reason) => {
                    tracing::warn!(dir = %d.display(), "not using the compile cache: {reason}");
                    None
                }
            }
        });

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), ticker_stop.clone())?;

        Ok(PolicyEngine {
            inner: Arc::new(Inner {
                engine,
                linker,
                services,
                cache_dir,
                compat,
                compiled: Mutex::new(HashMap::new()),
                ticker_stop,
                admission_deadline: options.admission_deadline,
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The linker with WASI (locked down) and every `ironhost:policy` import.
    pub fn linker(&self) -> &Linker<PolicyCtx> {
        &self.inner.linker
    }

    /// The deadline of each admission call (see [`EngineOptions::admission_deadline`]).
    pub fn admission_deadline(&self) -> Duration {
        self.inner.admission_deadline
    }

    /// The host services behind the capabilities.
    pub fn services(&self) -> &HostServices {
        &self.inner.services
    }

    /// The directory of this engine's precompiled components, if caching is on.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.inner
            .cache_dir
            .as_ref()
            .map(|d| d.join(&self.inner.compat))
    }

    /// Compile `bytes` (already checked to be a component) or fetch it from the caches.
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, CompileSource), EngineError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(c) = self.inner.compiled.lock().get(&hash) {
            return Ok((c.clone(), CompileSource::Memory));
        }
        let cached_path = self
            .cache_dir()
            .map(|d| d.join(format!("{}.cwasm", hex::encode(hash))));
        let (component, source) = match cached_path.as_deref().and_then(|p| self.load_cached(p)) {
            Some(c) => (c, CompileSource::DiskCache),
            None => {
                let c = Component::new(&self.inner.engine, bytes)
                    .map_err(|e| EngineError::Compile(format!("{e:#}")))?;
                if let Some(path) = &cached_path
                    && let Err(e) = store_cached(path, &c)
                {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write compile cache");
                }
                (c, CompileSource::Compiled)
            }
        };
        self.inner.compiled.lock().insert(hash, component.clone());
        Ok((component, source))
    }

    #[expect(
        unsafe_code,
        reason = "deserializing precompiled code is unsafe in wasmtime: the file must be one \
                  this engine wrote. It lives in our cache directory under the engine's \
                  compatibility hash and the source's SHA-256 and is replaced only by atomic \
                  rename; wasmtime also checks its header against the engine's configuration"
    )]
    fn load_cached(&self, path: &Path) -> Option<Component> {
        // Read into memory rather than map the file: a mapped file truncated behind our back
        // (by anyone) would crash the process with SIGBUS.
        let bytes = std::fs::read(path).ok()?;
        // SAFETY: see the `expect` reason above.
        match unsafe { Component::deserialize(&self.inner.engine, &bytes) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "ignoring unusable compile cache entry");
                None
            }
        }
    }
}

fn store_cached(path: &Path, component: &Component) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    // Write beside the final name and rename, so a reader never sees half a file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn spawn_ticker(engine: Engine, stop: Arc<AtomicBool>) -> Result<(), EngineError> {
    std::thread::Builder::new()
        .name("ironhost-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .map(|_| ())
        .map_err(|e| EngineError::Setup(format!("cannot start the deadline ticker: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_deadline_values_are_checked() {
        assert_eq!(
            parse_admission_deadline("250"),
            Ok(Duration::from_millis(250))
        );
        for bad in ["0", "60001", "1s", "-5", ""] {
            let err = parse_admission_deadline(bad).expect_err(bad);
            assert!(err.starts_with("IRONHOST_ADMISSION_DEADLINE_MS: "), "{err}");
        }
        assert!(
            parse_admission_deadline("0")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            parse_admission_deadline("1s")
                .unwrap_err()
                .contains("not a whole number")
        );
    }
}
