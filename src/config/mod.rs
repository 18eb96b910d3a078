//! Typed configuration: built-in defaults < file < `IMGRELAY_SECTION__KEY` environment < CLI flags.
//!
//! Unknown keys and bad values are errors that name the key, so a typo in an operator's file never
//! silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod settings;

pub use settings::{BadKey, LogSettings, Settings};

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "IMGRELAY_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    /// Every key whose value is unusable, not just the first, so one edit can fix them all.
    #[error("{}", settings::lines(.0))]
    Invalid(Vec<BadKey>),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub signing: SigningConfig,
    pub rewrite: RewriteConfig,
    pub upstream: UpstreamConfig,
    pub image: ImageConfig,
    pub cache: CacheConfig,
    pub shared_cache: SharedCacheConfig,
    pub http: HttpConfig,
    pub origin: OriginConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub public_prefix: String,
    pub public_base_url: String,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub shutdown_grace_s: u64,
    /// Seconds a client may pause while sending a request body before the request is dropped.
    pub client_idle_timeout_s: u64,
    /// Bytes per second a request body must average once `client_idle_timeout_s` of grace is
    /// spent (0: no minimum); a body trickled slower is dropped with 408.
    pub client_body_min_rate: u64,
    /// The control plane (rewrite endpoint, metrics): its own listener, loopback by default;
    /// empty turns it off.
    pub admin_listen: String,
    /// When set, control-plane requests must carry `Authorization: Bearer <token from file>`.
    pub admin_token_file: PathBuf,
    /// Seconds from accept until the first request head must be complete.
    pub header_timeout_s: u64,
    /// Seconds an idle keep-alive connection (HTTP/1.1 or HTTP/2) stays open.
    pub keepalive_timeout_s: u64,
    /// Seconds a response write may stay blocked on a client that does not read.
    pub send_timeout_s: u64,
    /// Client connections open at once (public listener); beyond it idle ones are closed first.
    pub max_connections: usize,
    /// Seconds between HTTP/2 keep-alive pings; a ping unanswered as long closes the connection.
    pub http2_ping_interval_s: u64,
    /// Microseconds a worker thread serves without sleeping before it offers its core to other
    /// threads at the end of a request (0: never).
    pub worker_burst_us: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_prefix: "/img".into(),
            public_base_url: String::new(),
            shutdown_grace_s: 30,
            client_idle_timeout_s: 30,
            client_body_min_rate: 1024,
            admin_listen: "127.0.0.1:8079".into(),
            admin_token_file: PathBuf::new(),
            header_timeout_s: 10,
            keepalive_timeout_s: 75,
            send_timeout_s: 30,
            max_connections: 4096,
            http2_ping_interval_s: 30,
            worker_burst_us: 200,
        }
    }
}

impl ServerConfig {
    /// Path under which the server answers image requests (the path part of `public_prefix`).
    pub fn route_prefix(&self) -> &str {
        match self.public_prefix.find("://") {
            Some(i) => {
                let rest = &self.public_prefix[i + 3..];
                rest.find('/').map_or("", |p| &rest[p..])
            }
            None => &self.public_prefix,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    pub key_file: PathBuf,
    pub verify_key_files: Vec<PathBuf>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            key_file: PathBuf::from("imgrelay.key"),
            verify_key_files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WrapperConfig {
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// How the inner URL after the prefix is decoded: "auto" (the default), "percent" or "raw".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RewriteConfig {
    pub wrappers: Vec<WrapperConfig>,
    pub direct_hosts: Vec<String>,
    pub max_width: u32,
    pub srcset_widths: Vec<u32>,
    pub dimensions: bool,
    pub lazy: bool,
    /// `fetchpriority="high"` on the first image of a document.
    pub fetchpriority: bool,
    pub canonical_attr: bool,
    pub front_matter_keys: Vec<String>,
    pub max_memory_kb: usize,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        let wrapper = |prefix: &str, param: Option<&str>, decode: Option<&str>| WrapperConfig {
            prefix: prefix.into(),
            param: param.map(Into::into),
            decode: decode.map(Into::into),
        };
        Self {
            wrappers: vec![
                wrapper("https://cors.zfour.workers.dev/?", None, None),
                wrapper("https://api.allorigins.win/raw", Some("url"), None),
                wrapper("https://corsproxy.io/", Some("url"), None),
                wrapper("https://corsproxy.io/?", None, Some("percent")),
                wrapper("https://cors-anywhere.herokuapp.com/", None, None),
            ],
            direct_hosts: Vec::new(),
            max_width: 1280,
            srcset_widths: vec![320, 640, 960, 1280],
            dimensions: true,
            lazy: true,
            fetchpriority: false,
            canonical_attr: true,
            front_matter_keys: ["headimg", "thumbnail", "cover", "photos"]
                .map(String::from)
                .to_vec(),
            max_memory_kb: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    pub allowed_hosts: Vec<String>,
    pub allow_private: bool,
    pub resolve: BTreeMap<String, String>,
    pub connect_timeout_ms: u64,
    pub timeout_ms: u64,
    pub max_bytes: u64,
    pub max_redirects: u32,
    /// Fetches in flight at once: with `max_bytes` this bounds the memory upstream bodies take.
    pub max_fetches: usize,
    /// PEM files of certificate authorities trusted for https upstreams besides the system's.
    pub ca_files: Vec<String>,
    /// Fetches waiting for a place; beyond it requests get 503 at once.
    pub fetch_queue: usize,
    pub user_agent: String,
    /// Hosts that refuse hot-linking without a Referer: "host" = "referer value".
    pub referer: BTreeMap<String, String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allow_private: false,
            resolve: BTreeMap::new(),
            connect_timeout_ms: 3000,
            timeout_ms: 10000,
            max_bytes: 20 * 1024 * 1024,
            max_redirects: 5,
            max_fetches: 32,
            ca_files: Vec::new(),
            fetch_queue: 512,
            user_agent: "imgrelay".into(),
            referer: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    pub max_src_pixels: u64,
    pub max_output_pixels: u64,
    /// Frames × pixels an animation may have in all.
    pub max_animation_pixels: u64,
    /// Scans a progressive JPEG may have.
    pub max_jpeg_scans: u32,
    pub formats: Vec<String>,
    pub quality: u8,
    pub max_concurrency: usize,
    pub queue: usize,
    pub allow_svg: bool,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            max_src_pixels: 50_000_000,
            max_output_pixels: 16_000_000,
            max_animation_pixels: 100_000_000,
            max_jpeg_scans: 100,
            formats: ["webp", "jpeg", "png"].map(String::from).to_vec(),
            quality: 80,
            max_concurrency: 0,
            queue: 128,
            allow_svg: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub memory_mb: u64,
    pub source_memory_mb: u64,
    pub max_entry_bytes: u64,
    pub negative_ttl_s: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_mb: 256,
            source_memory_mb: 64,
            max_entry_bytes: 8 * 1024 * 1024,
            negative_ttl_s: 30,
        }
    }
}

/// `[shared_cache]`: a Redis (or Redis Cluster) tier behind the memory caches, shared by every
/// instance; off while neither `url` nor `cluster_nodes` is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SharedCacheConfig {
    /// `redis://[user:password@]host:port/db`, `rediss://…` for TLS; empty: no single server.
    pub url: String,
    /// Seed nodes of a Redis Cluster, instead of `url`.
    pub cluster_nodes: Vec<String>,
    /// PEM of the CA that signed the Redis TLS certificates (`rediss://`), trusted instead of
    /// the system's roots; empty: the system's roots.
    pub ca_file: PathBuf,
    pub key_prefix: String,
    /// Longest wait for one command; slower counts as an error.
    pub timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// After an error the tier is left alone this long, so a dead Redis costs one timeout.
    pub retry_ms: u64,
    pub ttl_s: u64,
    /// Larger variants and sources are not written to the tier.
    pub max_entry_bytes: u64,
    /// How long a lease on a variant being made lasts when its owner never releases it.
    pub lease_ms: u64,
    /// How long an instance waits for another instance's result before doing the work itself.
    pub lease_wait_ms: u64,
    /// Writes queued at once; more are dropped (the response never waits for them).
    pub max_pending_writes: usize,
}

impl Default for SharedCacheConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            cluster_nodes: Vec::new(),
            ca_file: PathBuf::new(),
            key_prefix: "imgrelay:".into(),
            timeout_ms: 250,
            connect_timeout_ms: 1000,
            retry_ms: 1000,
            ttl_s: 7 * 24 * 3600,
            max_entry_bytes: 8 * 1024 * 1024,
            lease_ms: 15_000,
            lease_wait_ms: 5_000,
            max_pending_writes: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub cache_control: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            cache_control: "public, max-age=31536000, immutable".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OriginConfig {
    pub url: String,
    pub connect_timeout_ms: u64,
    /// Longest wait for the origin's response headers, and then between two body chunks.
    pub timeout_ms: u64,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            connect_timeout_ms: 3000,
            timeout_ms: 30000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// "text" or "json".
    pub format: String,
    /// A `tracing` filter such as "info" or "imgrelay=debug"; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Flags given on the command line; they override everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
}

impl Config {
    /// Loads the effective config: defaults, then `path` (when it exists or was named explicitly),
    /// then the process environment, then `overrides`.
    pub fn load(
        path: &Path,
        path_is_explicit: bool,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !path_is_explicit => None,
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Self::from_parts(
            text.as_deref().map(|t| (path, t)),
            std::env::vars(),
            overrides,
        )
    }

    /// Builds a config from file text, environment pairs and flags; the testable core of [`load`].
    /// Values are checked when the config is turned into [`Settings`].
    ///
    /// [`load`]: Config::load
    pub fn from_parts(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some((path, text)) => {
                let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
                // Deserialize the file alone first so its errors point at its lines.
                Config::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
                    ConfigError::Parse {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    }
                })?;
                table
            }
            None => toml::Table::new(),
        };
        let defaults = toml::Value::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(vec![BadKey::new("(defaults)", e.to_string())]))?;
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (var, value) in env {
            apply_env(&mut table, &defaults, &var, &value)?;
        }
        let mut config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Env {
                var: format!("{ENV_PREFIX}*"),
                message: e.to_string(),
            })?;
        if let Some(listen) = &overrides.listen {
            config.server.listen = listen.clone();
        }
        if let Some(dir) = file.and_then(|(path, _)| path.parent()) {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Makes every relative file path absolute against `dir`, the config file's directory, so a
    /// server started from anywhere finds the same key files.
    fn resolve_paths(&mut self, dir: &Path) {
        let resolve = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        resolve(&mut self.signing.key_file);
        self.signing.verify_key_files.iter_mut().for_each(resolve);
        resolve(&mut self.server.admin_token_file);
        resolve(&mut self.shared_cache.ca_file);
        for file in &mut self.upstream.ca_files {
            let mut p = PathBuf::from(&*file);
            resolve(&mut p);
            *file = p.to_string_lossy().into_owned();
        }
    }

    /// The effective config as TOML with secrets masked (URL credentials).
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        masked.origin.url = mask_url_credentials(&masked.origin.url);
        for w in &mut masked.rewrite.wrappers {
            w.prefix = mask_url_credentials(&w.prefix);
        }
        toml::to_string_pretty(&masked).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

fn mask_url_credentials(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("***");
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => s.to_string(),
    }
}

/// Applies one `IMGRELAY_SECTION__KEY=value` to the table, typed after the default's type.
fn apply_env(
    table: &mut toml::Table,
    defaults: &toml::Value,
    var: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let env_err = |message: String| ConfigError::Env {
        var: var.to_string(),
        message,
    };
    let rest = &var[ENV_PREFIX.len()..];
    let (section, key) = rest
        .split_once("__")
        .ok_or_else(|| env_err("expected IMGRELAY_SECTION__KEY".into()))?;
    let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
    let default = defaults
        .get(&section)
        .and_then(|s| s.get(&key))
        .ok_or_else(|| env_err(format!("unknown config key {section}.{key}")))?;
    let parsed = match default {
        toml::Value::String(_) => toml::Value::String(value.to_string()),
        _ => {
            let doc: toml::Table = toml::from_str(&format!("v = {value}"))
                .map_err(|e| env_err(format!("not a TOML value for {section}.{key}: {e}")))?;
            doc.get("v")
                .cloned()
                .ok_or_else(|| env_err("empty value".into()))?
        }
    };
    if std::mem::discriminant(&parsed) != std::mem::discriminant(default) {
        return Err(env_err(format!(
            "{section}.{key} expects a {}, got {}",
            default.type_str(),
            parsed.type_str()
        )));
    }
    let section_table = table
        .entry(section.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match section_table {
        toml::Value::Table(t) => {
            t.insert(key, parsed);
            Ok(())
        }
        _ => Err(env_err(format!("[{section}] is not a table in the file"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// What the commands do: merge, then parse into settings.
    fn load(
        file: Option<(&Path, &str)>,
        env: Vec<(String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let config = Config::from_parts(file, env, overrides)?;
        Settings::from_config(&config)?;
        Ok(config)
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.route_prefix(), "/img");
        // Out of the box the control plane (it signs URLs) is reachable from this host only.
        let admin: SocketAddr = c.server.admin_listen.parse().unwrap();
        assert!(admin.ip().is_loopback());
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let file = "[signing]\nkey_file = \"keys/k\"\nverify_key_files = [\"/abs/old\"]\n\
                    [server]\nadmin_token_file = \"t\"\n";
        // Merged only: the token file is read when settings are made.
        let c = Config::from_parts(
            Some((Path::new("/etc/imgrelay/config.toml"), file)),
            env(&[]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.signing.key_file, Path::new("/etc/imgrelay/keys/k"));
        assert_eq!(c.signing.verify_key_files, [PathBuf::from("/abs/old")]);
        assert_eq!(c.server.admin_token_file, Path::new("/etc/imgrelay/t"));
    }

    #[test]
    fn the_control_plane_cannot_share_the_public_address() {
        let mut c = Config::default();
        c.server.admin_listen = c.server.listen.clone();
        let err = Settings::from_config(&c).unwrap_err().to_string();
        assert!(err.contains("server.admin_listen"), "{err}");
    }

    #[test]
    fn precedence_file_env_flags() {
        let file = "[cache]\nmemory_mb = 100\n[server]\nlisten = \"127.0.0.1:1\"\n";
        let c = load(
            Some((Path::new("c.toml"), file)),
            env(&[("IMGRELAY_CACHE__MEMORY_MB", "512")]),
            &Overrides {
                listen: Some("127.0.0.1:2".into()),
            },
        )
        .unwrap();
        assert_eq!(c.cache.memory_mb, 512);
        assert_eq!(c.server.listen, "127.0.0.1:2");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load(
            Some((Path::new("c.toml"), "[cache]\nmemroy_mb = 1\n")),
            env(&[]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("memroy_mb"), "{err}");
        let err = load(
            None,
            env(&[("IMGRELAY_CACHE__NOPE", "1")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cache.nope"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = load(
            None,
            env(&[("IMGRELAY_IMAGE__QUALITY", "0")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("image.quality"), "{err}");
        let err = load(
            None,
            env(&[("IMGRELAY_CACHE__MEMORY_MB", "lots")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("IMGRELAY_CACHE__MEMORY_MB"), "{err}");
    }

    #[test]
    fn unusable_ca_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for (i, file) in ["/nonexistent/ca.pem", empty.to_str().unwrap()]
            .into_iter()
            .enumerate()
        {
            let mut c = Config::default();
            c.upstream.ca_files = vec![file.into()];
            let err = Settings::from_config(&c).unwrap_err().to_string();
            assert!(err.contains("upstream.ca_files[0]"), "{i}: {err}");
            assert!(err.contains(file), "{i}: {err}");
        }
    }

    #[test]
    fn absolute_prefix_routes_by_path() {
        let mut c = Config::default();
        c.server.public_prefix = "https://img.example.com/p/img".into();
        assert_eq!(c.server.route_prefix(), "/p/img");
        Settings::from_config(&c).unwrap();
    }

    #[test]
    fn shipped_config_toml_lists_the_defaults() {
        let text = include_str!("../../config.toml");
        let c = load(
            Some((Path::new("config.toml"), text)),
            env(&[]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c, Config::default());
        let file: toml::Table = toml::from_str(text).unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        for (section, keys) in defaults.as_table().unwrap() {
            for key in keys.as_table().unwrap().keys() {
                assert!(
                    file.get(section).and_then(|s| s.get(key)).is_some(),
                    "config.toml lacks {section}.{key}"
                );
            }
        }
    }

    #[test]
    fn masks_credentials() {
        let mut c = Config::default();
        c.origin.url = "http://user:secret@127.0.0.1:9/".into();
        let out = c.to_masked_toml();
        assert!(!out.contains("secret"));
    }
}
