//! [`Client`], [`Config`], [`ClientBuilder`] and [`ShutdownHandle`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use grammers_client::client::{LoginToken, PasswordToken};
use grammers_client::peer::User;
use grammers_mtsender::{ConnectionParams, SenderPool, SenderPoolHandle};
use grammers_session::updates::UpdatesLike;
use session_core::{Change, FlushPolicy, SessionBackend, SessionStore};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::adapter::StoreSession;
use crate::error::ClientError;
use crate::guard::guarded;
use crate::health::{Health, SessionHealth};
use crate::updates::Updates;

/// The session file used when none is given.
pub const DEFAULT_SESSION_PATH: &str = "layer.session";

/// What [`Client::connect`] needs.
///
/// ```
/// use layer_client::Config;
/// let config = Config { api_id: 12345, api_hash: "abc123".into(), ..Default::default() };
/// assert_eq!(config.session_path.to_str(), Some("layer.session"));
/// assert!(!format!("{config:?}").contains("abc123"), "Debug hides the api_hash");
/// ```
#[derive(Clone)]
pub struct Config {
    /// Where the session lives. A path ending in `.db` selects the SQLite backend (feature
    /// `sqlite-session`); anything else the crash-safe binary file backend. Default:
    /// `layer.session` in the working directory.
    pub session_path: PathBuf,
    /// Your application's api_id from <https://my.telegram.org>.
    pub api_id: i32,
    /// Your application's api_hash from <https://my.telegram.org>.
    pub api_hash: String,
    /// When changes that are not critical (peers, update state) are written. Auth keys, the
    /// home DC and the logged-in user are always written before the call that made them returns.
    pub flush_policy: FlushPolicy,
    /// Connect to DCs over IPv6 instead of IPv4.
    pub use_ipv6: bool,
    /// Encryption at rest: the key (or passphrase) the session file is sealed with. With a key,
    /// a plain session file is sealed on its first write; without one, a sealed file is refused
    /// with [`SessionError::Sealed`](session_core::SessionError::Sealed) (never a new login).
    /// See [`ClientBuilder::session_key`].
    pub session_key: Option<session_core::Keyring>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("session_path", &self.session_path)
            .field("api_id", &self.api_id)
            .field("api_hash", &if self.api_hash.is_empty() { "" } else { "<redacted>" })
            .field("flush_policy", &self.flush_policy)
            .field("use_ipv6", &self.use_ipv6)
            // Keyring's Debug shows key ids only, never key bytes.
            .field("session_key", &self.session_key)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            session_path: PathBuf::from(DEFAULT_SESSION_PATH),
            api_id: 0,
            api_hash: String::new(),
            flush_policy: FlushPolicy::default(),
            use_ipv6: false,
            session_key: None,
        }
    }
}

enum Source {
    Backend(Arc<dyn SessionBackend>),
    Path(PathBuf),
    String(String),
    Memory,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Backend(b) => write!(f, "Backend({})", b.name()),
            Source::Path(p) => write!(f, "Path({})", p.display()),
            // A session string is a secret: never print it.
            Source::String(_) => f.write_str("String(<redacted>)"),
            Source::Memory => f.write_str("Memory"),
        }
    }
}

/// Builds a [`Client`] with any session backend. Start with [`Client::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use layer_client::Client;
/// use layer_client::session_backend::InMemoryBackend;
/// let (client, shutdown) = Client::builder()
///     .session(InMemoryBackend::new())
///     .api_id(12345)
///     .api_hash("abc123")
///     .connect()
///     .await?;
/// # drop(client); shutdown.shutdown().await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `.connect()` is awaited"]
pub struct ClientBuilder {
    source: Source,
    api_id: Option<i32>,
    api_hash: String,
    flush_policy: FlushPolicy,
    params: Option<ConnectionParams>,
    use_ipv6: bool,
    wait_for_owner: Option<std::time::Duration>,
    session_key: Option<session_core::Keyring>,
    #[cfg(feature = "proxy")]
    proxy: Option<String>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("source", &self.source)
            .field("api_id", &self.api_id)
            .field("flush_policy", &self.flush_policy)
            .field("use_ipv6", &self.use_ipv6)
            .field("session_key", &self.session_key)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            source: Source::Path(PathBuf::from(DEFAULT_SESSION_PATH)),
            api_id: None,
            api_hash: String::new(),
            flush_policy: FlushPolicy::default(),
            params: None,
            use_ipv6: false,
            wait_for_owner: None,
            session_key: None,
            #[cfg(feature = "proxy")]
            proxy: None,
        }
    }
}

impl ClientBuilder {
    /// Connects through a proxy, e.g. `socks5://user:password@127.0.0.1:1080` (the URL is
    /// never printed: it may hold a password).
    #[cfg(feature = "proxy")]
    #[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Whether a proxy was set (the URL itself is a secret).
    #[cfg(feature = "proxy")]
    #[cfg_attr(docsrs, doc(cfg(feature = "proxy")))]
    pub fn has_proxy(&self) -> bool {
        self.proxy.is_some()
    }

    /// Stores the session in `session`: any [`SessionBackend`] value (ours, a third party's or
    /// your own, or an `Arc`/`Box` of one), or a path (`&str`, `String`, `&Path`, `PathBuf`),
    /// which chooses the backend as [`Config::session_path`] does (`.db`: SQLite, else the
    /// binary file backend).
    pub fn session(mut self, session: impl Into<session_core::SessionSource>) -> Self {
        self.source = match session.into() {
            session_core::SessionSource::Backend(backend) => Source::Backend(backend),
            session_core::SessionSource::Path(path) => Source::Path(path),
        };
        self
    }

    /// Stores the session in the file at `path`, choosing the backend as [`Config::session_path`]
    /// does (`.db`: SQLite, else the binary file backend). The default is `layer.session`.
    pub fn session_path(mut self, path: impl AsRef<Path>) -> Self {
        self.source = Source::Path(path.as_ref().to_path_buf());
        self
    }

    /// Starts from a session string (ours, or one exported by Telethon, Pyrogram, GramJS or
    /// mtcute) kept in memory. An empty string means a new session. Read back the updated string
    /// with [`Client::export_session_string`].
    pub fn session_string(mut self, session: impl Into<String>) -> Self {
        self.source = Source::String(session.into());
        self
    }

    /// Keeps the session in memory only: nothing survives the process.
    pub fn in_memory(mut self) -> Self {
        self.source = Source::Memory;
        self
    }

    /// Your application's api_id from <https://my.telegram.org> (required).
    pub fn api_id(mut self, api_id: i32) -> Self {
        self.api_id = Some(api_id);
        self
    }

    /// Your application's api_hash from <https://my.telegram.org> (required for signing in).
    pub fn api_hash(mut self, api_hash: impl Into<String>) -> Self {
        self.api_hash = api_hash.into();
        self
    }

    /// When non-critical changes are written (see [`Config::flush_policy`]).
    pub fn flush_policy(mut self, policy: FlushPolicy) -> Self {
        self.flush_policy = policy;
        self
    }

    /// Connect over IPv6.
    pub fn use_ipv6(mut self, yes: bool) -> Self {
        self.use_ipv6 = yes;
        self
    }

    /// Full control over grammers' connection parameters (device model, retry policy, ...).
    pub fn connection_params(mut self, params: ConnectionParams) -> Self {
        self.params = Some(params);
        self
    }

    /// Waits up to `wait` for a previous owner of the session to let it go before giving up with
    /// [`SessionError::Locked`](session_core::SessionError::Locked) (a rolling deploy: the new
    /// process starts while the old one shuts down). Applies to sessions this builder opens
    /// (a path); a backend passed with [`session`](Self::session) was opened by the caller,
    /// whose backend options say how long it waits (e.g. `RemoteOptions::wait_for_owner`).
    pub fn wait_for_owner(mut self, wait: std::time::Duration) -> Self {
        self.wait_for_owner = Some(wait);
        self
    }

    /// Encryption at rest: the session is sealed with `keys` (AES-256-GCM-SIV; a passphrase
    /// is stretched with Argon2id). Applies to the sessions the builder opens itself: a file
    /// (sealed log), a `.db` SQLite file (`sqlite-session`: sealed rows) and a session string
    /// (the sealed `Le1.` form, also what [`Client::export_session_string`] returns). A plain
    /// session is sealed on its first write; a sealed one opened with another key is
    /// [`SessionError::WrongKey`](session_core::SessionError::WrongKey), and without a key
    /// [`SessionError::Sealed`](session_core::SessionError::Sealed), never a new login.
    /// A backend passed to [`session`](Self::session) is opened by the application with its
    /// own key: combining it with this is refused by `connect`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use layer_client::core::{KdfParams, Keyring, Passphrase};
    /// use layer_client::Client;
    /// let passphrase = std::env::var("LAYER_SESSION_KEY")?;
    /// let keys = Keyring::from_passphrase(Passphrase::new(passphrase), KdfParams::default());
    /// let (client, shutdown) = Client::builder()
    ///     .session_path("bot.session")
    ///     .session_key(keys)
    ///     .api_id(12345)
    ///     .api_hash("abc123")
    ///     .connect()
    ///     .await?;
    /// # drop(client); shutdown.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn session_key(mut self, keys: session_core::Keyring) -> Self {
        self.session_key = Some(keys);
        self
    }

    fn session_key_opt(mut self, keys: Option<session_core::Keyring>) -> Self {
        self.session_key = keys;
        self
    }

    /// Loads the session and starts the client.
    ///
    /// Fails when the session cannot be loaded (locked by another process, corrupt, a store
    /// that is unreachable): it never starts a new login over a session it could not read.
    /// Connections to Telegram are opened on the first request, not here.
    pub async fn connect(self) -> Result<(Client, ShutdownHandle), ClientError> {
        let api_id = match self.api_id {
            Some(id) if id > 0 => id,
            _ => return Err(ClientError::Config("api_id is required (get one at https://my.telegram.org)".into())),
        };
        let backend = open_source(self.source, self.wait_for_owner, self.session_key.clone()).await?;
        let store = SessionStore::open(backend, self.flush_policy).await?;
        let mut params = self.params.unwrap_or_default();
        params.use_ipv6 |= self.use_ipv6;
        #[cfg(feature = "proxy")]
        if self.proxy.is_some() {
            params.proxy_url = self.proxy;
        }
        Client::start(store, api_id, self.api_hash, params, self.flush_policy.interval, self.session_key).await
    }
}

async fn open_source(
    source: Source,
    wait_for_owner: Option<std::time::Duration>,
    key: Option<session_core::Keyring>,
) -> Result<Arc<dyn SessionBackend>, ClientError> {
    Ok(match source {
        // A backend built by the application was opened by it, with its own key or none: a key
        // given here could not reach it, and silently storing plain bytes is what the key was
        // meant to prevent.
        Source::Backend(b) if key.is_some() => {
            return Err(ClientError::Config(format!(
                "session_key cannot encrypt a backend passed in ({}): open the backend with its own key \
                 (e.g. open_with_key) and pass no session_key",
                b.name()
            )))
        }
        Source::Backend(b) => b,
        // Nothing of an in-memory session is at rest.
        Source::Memory => Arc::new(session_core::InMemoryBackend::new()),
        Source::Path(path) => {
            let deadline = wait_for_owner.map(|w| tokio::time::Instant::now() + w);
            loop {
                match crate::session_backend::open_path(path.clone(), key.clone()).await {
                    Err(ClientError::Session(session_core::SessionError::Locked { .. }))
                        if deadline.is_some_and(|d| tokio::time::Instant::now() < d) =>
                    {
                        // The owner lock goes with its process: poll often enough that a
                        // handover takes a fraction of a second.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    other => break other?,
                }
            }
        }
        Source::String(s) => crate::session_backend::open_string(s, key).await?,
    })
}

/// State shared by every clone of a [`Client`] and its [`ShutdownHandle`].
struct Shared {
    store: SessionStore,
    pool: SenderPoolHandle,
    runner: Mutex<Option<JoinHandle<()>>>,
    updates: Mutex<Option<mpsc::Receiver<UpdatesLike>>>,
    health: Arc<Health>,
    /// Holds a store clone (and with it the backend and its owner lock): ended by shutdown.
    monitor: Mutex<Option<JoinHandle<()>>>,
    /// Watches the backend's lease, when it has one (see `ownership`).
    lease_guard: Mutex<Option<JoinHandle<()>>>,
    /// The key the session is sealed with, for exported strings.
    session_key: Option<session_core::Keyring>,
}

impl crate::ownership::Stop for Shared {
    fn stop(&self, error: session_core::SessionError) {
        // Abort the runner first: requests already queued are dropped, not sent.
        if let Some(runner) = self.runner.lock().unwrap_or_else(PoisonError::into_inner).take() {
            runner.abort();
        }
        self.pool.quit();
        self.health.lease_lost(&error);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(monitor) = self.monitor.lock().unwrap_or_else(PoisonError::into_inner).take() {
            monitor.abort();
        }
        if let Some(guard) = self.lease_guard.lock().unwrap_or_else(PoisonError::into_inner).take() {
            guard.abort();
        }
        // Best effort when nobody called `ShutdownHandle::shutdown`: stop the network and write
        // what is pending on the runtime we were created on. Critical changes were already
        // written when they were made.
        self.pool.quit();
        if self.store.pending() > 0 {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let store = self.store.clone();
                rt.spawn(async move {
                    if let Err(e) = store.close().await {
                        tracing::warn!(error = %e, "final session flush failed");
                    }
                });
            }
        }
    }
}

/// A Telegram client whose session is kept by a [`SessionBackend`].
///
/// Cheap to clone; clones share the connection and the session. The network is grammers
/// ([`Client::raw`] gives the full grammers API); every auth key, DC address, the home DC, the
/// logged-in user, cached peers and the update state it produces are persisted through the
/// backend.
#[derive(Clone)]
pub struct Client {
    raw: grammers_client::Client,
    api_id: i32,
    api_hash: Arc<str>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("api_id", &self.api_id).field("session", &self.shared.store).finish()
    }
}

/// Stops a [`Client`] and writes every pending session change.
///
/// Call [`shutdown`](ShutdownHandle::shutdown) before the process exits. Dropping the handle
/// does nothing by itself; when the last client clone is dropped too, a final flush is started
/// on the runtime as a best effort.
#[must_use = "call .shutdown().await before exiting to flush the session"]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle").field("session", &self.shared.store).finish()
    }
}

impl ShutdownHandle {
    /// Closes every connection, waits for the network task to end, then flushes and closes
    /// the session. Client calls made afterwards fail.
    pub async fn shutdown(self) -> Result<(), ClientError> {
        self.shared.pool.quit();
        let runner = self.shared.runner.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(runner) = runner {
            if let Err(e) = runner.await {
                tracing::warn!(error = %e, "network task ended abnormally");
            }
        }
        let monitor = self.shared.monitor.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(monitor) = monitor {
            monitor.abort();
            // Waiting drops its store clone, so the backend (and its lock) goes with the client.
            let _ = monitor.await;
        }
        self.shared.store.close().await?;
        Ok(())
    }

    /// Writes every pending change now, without stopping anything.
    pub async fn flush(&self) -> Result<(), ClientError> {
        Ok(self.shared.store.flush().await?)
    }
}

impl Client {
    /// Connects with a [`Config`]: the session file at `config.session_path`.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use layer_client::{Client, Config};
    /// let (client, shutdown) = Client::connect(Config {
    ///     session_path: "my.session".into(),
    ///     api_id: 12345,
    ///     api_hash: "abc123".into(),
    ///     ..Default::default()
    /// })
    /// .await?;
    /// println!("authorized: {}", client.is_authorized().await?);
    /// shutdown.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: Config) -> Result<(Client, ShutdownHandle), ClientError> {
        Client::builder()
            .session_path(config.session_path)
            .api_id(config.api_id)
            .api_hash(config.api_hash)
            .flush_policy(config.flush_policy)
            .use_ipv6(config.use_ipv6)
            .session_key_opt(config.session_key)
            .connect()
            .await
    }

    /// A builder, for any backend.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects with a session string kept in memory (see [`ClientBuilder::session_string`]).
    pub async fn with_string_session(
        session: &str,
        api_id: i32,
        api_hash: impl Into<String>,
    ) -> Result<(Client, ShutdownHandle), ClientError> {
        Client::builder().session_string(session).api_id(api_id).api_hash(api_hash).connect().await
    }

    async fn start(
        store: SessionStore,
        api_id: i32,
        api_hash: String,
        params: ConnectionParams,
        interval: std::time::Duration,
        session_key: Option<session_core::Keyring>,
    ) -> Result<(Client, ShutdownHandle), ClientError> {
        if store.read(|d| d.api_id.is_none()) {
            store.apply(Change::SetApiId(Some(api_id))).await?;
        }
        let lease = store.backend().lease();
        let resource = store.backend().name().to_owned();
        crate::ownership::check_held(&resource, lease.as_ref())?;
        let health = Arc::new(Health::new());
        let session = Arc::new(StoreSession::new(store.clone(), Arc::clone(&health)));
        let pool = SenderPool::with_configuration(session, api_id, params);
        let handle = pool.handle.clone();
        let raw = grammers_client::Client::new(pool.handle);
        let runner = tokio::spawn(pool.runner.run());
        let store_for_monitor = store.clone();
        let shared = Arc::new(Shared {
            store,
            pool: handle.thin,
            runner: Mutex::new(Some(runner)),
            updates: Mutex::new(Some(pool.updates)),
            monitor: Mutex::new(Some(tokio::spawn(monitor(store_for_monitor, Arc::clone(&health), interval)))),
            health,
            lease_guard: Mutex::new(None),
            session_key,
        });
        if let Some(lease) = lease {
            let guard = tokio::spawn(crate::ownership::guard(lease, resource, Arc::downgrade(&shared)));
            *shared.lease_guard.lock().unwrap_or_else(PoisonError::into_inner) = Some(guard);
        }
        let client = Client { raw, api_id, api_hash: api_hash.into(), shared: Arc::clone(&shared) };
        Ok((client, ShutdownHandle { shared }))
    }

    /// The grammers client underneath, for everything beyond sessions and sign-in (messages,
    /// updates, files).
    pub fn raw(&self) -> &grammers_client::Client {
        &self.raw
    }

    /// The session store: a consistent in-memory view ([`SessionStore::snapshot`]) and explicit
    /// flushing.
    pub fn session(&self) -> &SessionStore {
        &self.shared.store
    }

    /// Watches whether the session store keeps up. A write the backend refused (including one
    /// made on grammers' behalf, which grammers itself only logs) turns it
    /// [`SessionHealth::Failing`]; the changes stay pending and are retried every flush
    /// interval until the backend takes them, which turns it back to
    /// [`SessionHealth::Healthy`]. The same error is also returned by the next call of ours.
    pub fn session_health(&self) -> tokio::sync::watch::Receiver<SessionHealth> {
        self.shared.health.subscribe()
    }

    /// The status of the session's lease, for backends that hold one (libSQL remote and
    /// replica, Redis, PostgreSQL); `None` for local backends, whose owner lock lasts as long as
    /// the backend. Whenever it is not [`LeaseStatus::Held`](session_core::LeaseStatus::Held),
    /// the client has stopped its network and its calls return
    /// [`SessionError::LeaseLost`](session_core::SessionError::LeaseLost).
    pub fn lease_status(&self) -> Option<tokio::sync::watch::Receiver<session_core::LeaseStatus>> {
        self.shared.store.backend().lease()
    }

    /// Returns, once, a store error recorded since our last call.
    fn check(&self) -> Result<(), ClientError> {
        Ok(self.shared.health.take()?)
    }

    /// The api_id this client was started with.
    pub fn api_id(&self) -> i32 {
        self.api_id
    }

    /// The updates channel grammers fills, to hand to
    /// [`grammers_client::Client::stream_updates`]. `None` after the first call. Prefer
    /// [`stream_updates`](Self::stream_updates): grammers' own stream does not record the
    /// update state in the session unless its `sync_update_state` is called.
    pub fn take_updates(&self) -> Option<mpsc::Receiver<UpdatesLike>> {
        self.shared.updates.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Starts receiving updates, with their state kept in the session (see [`Updates`]).
    ///
    /// With `catch_up`, the stream resumes from the stored update state: grammers asks
    /// `updates.getDifference` for what happened since the last update handed out before the
    /// previous run ended. Without it, updates start from now (`updates.getState`). Fails with
    /// [`ClientError::Config`] when called twice (the updates channel can be taken once).
    pub async fn stream_updates(&self, catch_up: bool) -> Result<Updates, ClientError> {
        self.check()?;
        let rx =
            self.take_updates().ok_or_else(|| ClientError::Config("the update stream was already taken".into()))?;
        let config = grammers_mtsender::UpdatesConfiguration { catch_up };
        let stream = self
            .raw
            .stream_updates(rx, config)
            .await
            .map_err(|e| ClientError::Session(session_core::SessionError::from_boxed(e, "update state")))?;
        Ok(Updates::new(stream, Arc::clone(&self.shared.health)))
    }

    /// Uploads the file at `path` (feature `fs`); send it with grammers' `InputMessage`.
    #[cfg(feature = "fs")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
    pub async fn upload_file(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<grammers_client::media::Uploaded, std::io::Error> {
        self.raw.upload_file(path).await
    }

    /// Downloads `media` (a photo, document, ...) to the file at `path` (feature `fs`).
    #[cfg(feature = "fs")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
    pub async fn download_media<D: grammers_client::media::Downloadable>(
        &self,
        media: &D,
        path: impl AsRef<Path>,
    ) -> Result<(), ClientError> {
        self.check()?;
        Ok(self.raw.download_media(media, path).await?)
    }

    /// Writes every pending session change now.
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.check()?;
        // The store reports a background failure once, before trying again; when the retry
        // writes everything, nothing was lost and there is nothing left to report.
        let result = match self.shared.store.flush().await {
            Err(session_core::SessionError::Closed) => Err(session_core::SessionError::Closed),
            Err(_) => self.shared.store.flush().await,
            Ok(()) => Ok(()),
        };
        match result {
            Ok(()) => {
                self.shared.health.recovered();
                Ok(())
            }
            Err(e) => {
                self.shared.health.failed_reported(&e, self.shared.store.pending());
                Err(e.into())
            }
        }
    }

    /// Whether the session is logged in: asks Telegram (`updates.getState`); a 401 answer means
    /// no. The stored session is left as it is either way.
    pub async fn is_authorized(&self) -> Result<bool, ClientError> {
        self.check()?;
        Ok(self.raw.is_authorized().await?)
    }

    /// Signs in as a bot with its token from @BotFather. A redirect to another DC
    /// (`USER_MIGRATE_n`) moves the session's home DC, persisted before this returns.
    pub async fn bot_sign_in(&self, token: &str) -> Result<User, ClientError> {
        self.check()?;
        let user = guarded("bot_sign_in", self.raw.bot_sign_in(token, &self.api_hash)).await??;
        self.saved(user).await
    }

    /// Asks Telegram to send a login code to `phone` (international format).
    pub async fn request_login_code(&self, phone: &str) -> Result<LoginToken, ClientError> {
        self.check()?;
        Ok(guarded("request_login_code", self.raw.request_login_code(phone, &self.api_hash)).await??)
    }

    /// Completes a user login with the code Telegram sent. When the account has two-step
    /// verification this fails with [`ClientError::PasswordRequired`]; pass its token to
    /// [`check_password`](Self::check_password).
    pub async fn sign_in(&self, token: &LoginToken, code: &str) -> Result<User, ClientError> {
        self.check()?;
        let user = guarded("sign_in", self.raw.sign_in(token, code)).await??;
        self.saved(user).await
    }

    /// Completes a login that needs the 2FA password (SRP is computed by grammers; the password
    /// never leaves this process).
    pub async fn check_password(
        &self,
        token: impl Into<Box<PasswordToken>>,
        password: impl AsRef<[u8]>,
    ) -> Result<User, ClientError> {
        self.check()?;
        let user = guarded("check_password", self.raw.check_password(*token.into(), password)).await??;
        self.saved(user).await
    }

    /// After Telegram accepted a login: the user, or [`ClientError::SignedInNotSaved`] when the
    /// session could not be written (the login itself stands; the changes stay pending).
    async fn saved(&self, user: User) -> Result<User, ClientError> {
        let result = match self.shared.health.take() {
            Err(e) => Err(e),
            Ok(()) => self.shared.store.flush().await,
        };
        match result {
            Ok(()) => Ok(user),
            Err(source) => {
                self.shared.health.failed_reported(&source, self.shared.store.pending());
                Err(ClientError::SignedInNotSaved { user: Box::new(user), source })
            }
        }
    }

    /// Logs out (`auth.logOut`) and deletes the stored session. When Telegram answers that the
    /// session was not authorized anyway (401), the stored session is deleted all the same;
    /// on any other failure nothing is deleted, so that the call can be retried.
    pub async fn sign_out(&self) -> Result<(), ClientError> {
        match self.raw.sign_out().await {
            Ok(_) => {}
            Err(grammers_mtsender::InvocationError::Rpc(e)) if e.code == 401 => {}
            Err(e) => return Err(e.into()),
        }
        let dcs: Vec<i32> = self.shared.store.read(|d| d.dcs.keys().map(|k| k.id).collect());
        for dc in dcs {
            self.shared.pool.disconnect_from_dc(dc);
        }
        self.shared.store.delete().await?;
        Ok(())
    }

    /// The session as a string in our full form (everything: every DC, key, peer and the
    /// update state), after flushing. Keep it secret: it is the account's login.
    ///
    /// A client given a [`session_key`](ClientBuilder::session_key) exports the sealed form
    /// (`Le1.…`), which only that key opens.
    pub async fn export_session_string(&self) -> Result<String, ClientError> {
        self.flush().await?;
        let snapshot = self.shared.store.snapshot();
        match self.shared.session_key.clone() {
            None => crate::session_backend::encode_string(&snapshot),
            // Deriving a passphrase's key is Argon2id: off the async runtime.
            Some(keys) => tokio::task::spawn_blocking(move || session_string::encode_sealed(&snapshot, &keys))
                .await
                .map_err(|e| ClientError::Config(format!("sealing task failed: {e}")))?
                .map_err(ClientError::from),
        }
    }
}

/// Retries pending changes every flush interval while the store is failing, and notices a
/// background flush failure nobody of ours has seen yet.
async fn monitor(store: SessionStore, health: Arc<Health>, interval: std::time::Duration) {
    let mut tick = tokio::time::interval(interval.max(std::time::Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !health.is_failing() && store.pending() == 0 {
            continue;
        }
        match store.flush().await {
            Ok(()) if store.pending() == 0 => health.recovered(),
            Ok(()) => {}
            Err(session_core::SessionError::Closed) => return,
            Err(e) => health.failed(e, store.pending()),
        }
    }
}

#[cfg(test)]
mod builder_tests {
    use super::*;
    use session_core::InMemoryBackend;

    #[test]
    fn session_takes_a_backend_or_a_path() {
        let b = Client::builder().session("my.session");
        assert!(matches!(&b.source, Source::Path(p) if p == Path::new("my.session")));
        let b = Client::builder().session(PathBuf::from("x.db"));
        assert!(matches!(&b.source, Source::Path(p) if p == Path::new("x.db")));
        let b = Client::builder().session(InMemoryBackend::new());
        assert!(matches!(&b.source, Source::Backend(_)));
        let shared: Arc<dyn SessionBackend> = Arc::new(InMemoryBackend::new());
        let b = Client::builder().session(shared);
        assert!(matches!(&b.source, Source::Backend(_)));
    }

    /// The key given to the builder or the config never shows in their `Debug` (only its id),
    /// as bytes, hex or the passphrase.
    #[test]
    fn debug_never_shows_the_session_key() {
        let key = session_core::SealingKey::from_bytes([0xab; 32]);
        let id = key.id().to_string();
        let b = Client::builder().session_path("x.session").session_key(session_core::Keyring::new(key));
        let passphrase = session_core::Passphrase::new("correct horse battery staple");
        let keys = session_core::Keyring::from_passphrase(passphrase, session_core::KdfParams::default());
        let config = Config { session_key: Some(keys), ..Default::default() };
        for shown in [format!("{b:?}"), format!("{b:#?}"), format!("{config:?}"), format!("{config:#?}")] {
            for secret in ["abab", "ABAB", "171, 171", "correct horse"] {
                assert!(!shown.contains(secret), "{secret} shown in {shown}");
            }
            assert!(shown.contains("session_key"), "{shown}");
        }
        assert!(format!("{b:?}").contains(&id), "the key id names the key");
    }
}
