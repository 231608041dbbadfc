//! The in-memory routing table: which script version answers which path and
//! which host.
//!
//! The control plane owns the truth (the database); it pushes a full snapshot
//! at start-up with [`RouteTable::replace_all`] and every later change with
//! the small update methods. Readers on the hot path get an immutable
//! [`Routes`] with one atomic load and never wait for a writer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use picloud_executor_core::{Executor, ScriptVersion};

/// First path segments that belong to PiCloud itself, never to an app; the
/// one list shared with the control plane, which refuses them as slugs. The
/// ingress answers `404 not_found` for them even if one slipped in.
pub use picloud_shared::RESERVED_APP_SLUGS;

/// Whether `slug` is one of [`RESERVED_APP_SLUGS`].
pub fn is_reserved_app_slug(slug: &str) -> bool {
    RESERVED_APP_SLUGS.contains(&slug)
}

/// The version of a script that serves its endpoint now.
#[derive(Debug, Clone)]
pub struct ActiveScript {
    /// The control plane's id of the app.
    pub app_id: i64,
    /// The app's slug, the first path segment of its endpoints.
    pub app_slug: String,
    /// The script's name, unique within its app.
    pub script_name: String,
    /// The control plane's id of the script.
    pub script_id: i64,
    /// The version to run, as the executor needs it. Its `version_id` is the
    /// control plane's version id.
    pub version: ScriptVersion,
    /// The script's metric series, registered on its first invocation;
    /// `ScriptSeries::default()` when building one.
    pub series: crate::metrics::ScriptSeries,
}

/// One app of the routing table.
#[derive(Debug, Clone)]
pub struct AppRoutes {
    /// The control plane's id of the app.
    pub id: i64,
    /// The app's active scripts, by name.
    pub scripts: HashMap<String, Arc<ActiveScript>>,
}

/// An immutable view of the whole routing table. A request reads one `Routes`
/// from start to end, so a concurrent deploy never shows it half an update.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    apps: HashMap<String, Arc<AppRoutes>>,
    hosts: HashMap<String, String>,
}

impl Routes {
    /// The app with slug `app_slug`.
    pub fn app(&self, app_slug: &str) -> Option<&AppRoutes> {
        self.apps.get(app_slug).map(|app| &**app)
    }

    /// The active version of `app_slug/script_name`.
    pub fn script(&self, app_slug: &str, script_name: &str) -> Option<&Arc<ActiveScript>> {
        self.apps.get(app_slug)?.scripts.get(script_name)
    }

    /// The slug of the app that host name `host` routes to. `host` may carry
    /// a port and any case; see [`normalize_host`].
    pub fn app_for_host(&self, host: &str) -> Option<&str> {
        if self.hosts.is_empty() {
            return None;
        }
        self.hosts
            .get(normalize_host(host).as_ref())
            .map(String::as_str)
    }

    /// Every app slug, in no particular order.
    pub fn app_slugs(&self) -> impl Iterator<Item = &str> {
        self.apps.keys().map(String::as_str)
    }

    /// Every host name with the slug of its app, in no particular order.
    pub fn domains(&self) -> impl Iterator<Item = (&str, &str)> {
        self.hosts
            .iter()
            .map(|(host, slug)| (host.as_str(), slug.as_str()))
    }

    /// The version ids of every active script.
    fn version_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.apps
            .values()
            .flat_map(|app| app.scripts.values().map(|script| script.version.version_id))
    }

    fn insert_script(&mut self, script: ActiveScript) -> Option<Arc<ActiveScript>> {
        let app = self.apps.entry(script.app_slug.clone()).or_insert_with(|| {
            Arc::new(AppRoutes {
                id: script.app_id,
                scripts: HashMap::new(),
            })
        });
        let app = Arc::make_mut(app);
        app.id = script.app_id;
        app.scripts
            .insert(script.script_name.clone(), Arc::new(script))
    }
}

/// Everything the routing table holds, as the control plane reads it from its
/// store: every script that has an active version, and every domain.
#[derive(Debug, Clone, Default)]
pub struct RoutesSnapshot {
    /// Every active script of every app.
    pub scripts: Vec<ActiveScript>,
    /// Every domain as `(host, app_slug)`.
    pub domains: Vec<(String, String)>,
}

/// Lower-cases a `Host` header value and strips its port and any trailing
/// dot, so that `Shop.Example.com.:8080` and `shop.example.com` are one host.
/// Bracketed IPv6 literals keep their brackets.
pub fn normalize_host(host: &str) -> std::borrow::Cow<'_, str> {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        // `[::1]:8080`: the port follows the closing bracket.
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        host.split(':').next().unwrap_or(host)
    };
    let without_dot = without_port.strip_suffix('.').unwrap_or(without_port);
    if without_dot.bytes().any(|byte| byte.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(without_dot.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(without_dot)
    }
}

/// The routing table shared by the ingress and the control plane.
///
/// Reads ([`load`](Self::load)) are one atomic pointer load. Writes copy the
/// touched app, publish the new table atomically, and then retire the warm
/// instances of versions that no longer serve: requests that already hold the
/// old version finish on it, the next request uses the new one.
pub struct RouteTable {
    current: ArcSwap<Routes>,
    /// Serialises writers so that two concurrent updates cannot lose one
    /// another; readers never take it.
    writer: Mutex<()>,
    executor: Executor,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.current.load())
            .finish_non_exhaustive()
    }
}

impl RouteTable {
    /// An empty table whose replaced versions are retired from `executor`.
    pub fn new(executor: Executor) -> RouteTable {
        RouteTable {
            current: ArcSwap::from_pointee(Routes::default()),
            writer: Mutex::new(()),
            executor,
        }
    }

    /// The current routes. Cheap; hold the result only for one request.
    pub fn load(&self) -> Arc<Routes> {
        self.current.load_full()
    }

    /// Replaces the whole table, for start-up and for a full resync.
    /// Versions that no longer serve are retired.
    pub fn replace_all(&self, snapshot: RoutesSnapshot) {
        let mut routes = Routes::default();
        for script in snapshot.scripts {
            routes.insert_script(script);
        }
        for (host, app_slug) in snapshot.domains {
            routes
                .hosts
                .insert(normalize_host(&host).into_owned(), app_slug);
        }
        self.update(|current| {
            *current = routes;
        });
    }

    /// Makes `script` the active version of its script: the deploy and the
    /// rollback. The next request runs it; a request already running the
    /// previous version finishes on it, and the previous version's warm
    /// instances are retired. Returns the version it replaced, if any.
    pub fn set_active(&self, script: ActiveScript) -> Option<Arc<ActiveScript>> {
        self.update(|routes| routes.insert_script(script))
    }

    /// Removes a script's endpoint; its version is retired. Returns whether
    /// the script was there.
    pub fn remove_script(&self, app_slug: &str, script_name: &str) -> bool {
        self.update(|routes| {
            let Some(app) = routes.apps.get_mut(app_slug) else {
                return false;
            };
            Arc::make_mut(app).scripts.remove(script_name).is_some()
        })
    }

    /// Removes an app with all its scripts and domains. Returns whether the
    /// app or any of its domains was there.
    pub fn remove_app(&self, app_slug: &str) -> bool {
        self.update(|routes| {
            let had_domains = routes.hosts.values().any(|slug| slug == app_slug);
            routes.hosts.retain(|_, slug| slug != app_slug);
            routes.apps.remove(app_slug).is_some() || had_domains
        })
    }

    /// Sets the host names that route to `app_slug`, replacing the ones it
    /// had. A host that belonged to another app moves to this one (the
    /// control plane keeps host names unique, so this only happens mid-sync).
    /// The app does not need to have scripts yet.
    pub fn set_domains<I, S>(&self, app_slug: &str, hosts: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|host| normalize_host(host.as_ref()).into_owned())
            .collect();
        self.update(|routes| {
            routes.hosts.retain(|_, slug| slug != app_slug);
            for host in hosts {
                routes.hosts.insert(host, app_slug.to_owned());
            }
        });
    }

    /// Applies `change` to a copy of the table, publishes it, and retires
    /// the versions that were active before and are not any more.
    fn update<T>(&self, change: impl FnOnce(&mut Routes) -> T) -> T {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = self.current.load_full();
        let mut after = Routes::clone(&before);
        let outcome = change(&mut after);
        let still_active: std::collections::HashSet<u64> = after.version_ids().collect();
        self.current.store(Arc::new(after));
        for version_id in before.version_ids() {
            if !still_active.contains(&version_id) {
                tracing::debug!(version_id, "retiring a version that no longer serves");
                self.executor.retire(version_id);
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_host;

    #[test]
    fn hosts_lose_their_port_case_and_trailing_dot() {
        assert_eq!(normalize_host("Shop.Example.COM:8080"), "shop.example.com");
        assert_eq!(normalize_host("shop.example.com."), "shop.example.com");
        assert_eq!(normalize_host("[::1]:3000"), "[::1]");
        assert_eq!(normalize_host("localhost"), "localhost");
    }
}
