//! The identity newtypes' shape: a UUIDv7 shown and parsed as a UUID.

/// Declares a UUIDv7 identity newtype `$name` (time-ordered, shown and parsed as a UUID; a bad
/// one is an `InvalidArgument` on field `id` naming `$what`).
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                $name(uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::Error;
            fn from_str(s: &str) -> Result<Self, $crate::Error> {
                uuid::Uuid::parse_str(s).map($name).map_err(|_| {
                    $crate::Error::invalid("id", concat!("is not a valid ", $what, " id (UUID)"))
                })
            }
        }
    };
}
