//! Secrets: values in the OS keyring, metadata in `secrets.yaml`, provider recipes.
//!
//! * [`value`]: [`SecretValue`], zeroized and never printable.
//! * [`store`] / [`keyring`]: the [`SecretStore`] trait and the OS keyring backends.
//! * [`registry`]: secrets.yaml entries and their validation.
//! * [`recipe`] / [`dummy`]: provider recipes and shape-keeping dummy values.
//! * [`kind`]: credential kinds (static, aws, google, oauth2, github-app).
//! * [`binding`]: what the proxy uses at run time, loaded once at start.
//! * [`phantom`]: per-session phantom dummies (a jailed `keygate run`) and their markers.
//! * [`reflect`]: every form a real value may come back in, for the scrubber.

pub mod binding;
pub mod dummy;
pub mod keyring;
pub mod kind;
pub mod phantom;
pub mod recipe;
pub mod reflect;
pub mod registry;
pub mod store;
pub mod value;

pub use binding::{Alarm, Binding, BodyMode, Missing, SecretSet, has_dot_segments};
pub use registry::{Registry, SecretEntry};
pub use store::{MemoryStore, SecretStore, StoreError};
pub use value::SecretValue;
