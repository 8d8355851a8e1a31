//! The IOC's shared vocabulary: the versioned event envelope that travels on the bus, the
//! entities it speaks of (stations, readings, administrative units, zones, agencies, cameras, wall layouts), the
//! state records read replicas hold, and the validation that turns sender input into them.
//!
//! This crate owns *meaning* and *validity*. It must never do I/O (no network, no files, no
//! clocks other than the `now` its callers pass in) and must depend on no other crate of ours.

pub mod alert;
pub mod aqi;
pub mod camera;
pub mod envelope;
pub mod error;
pub mod forecast;
pub mod geoindex;
pub mod id;
pub mod indicator;
pub mod layer;
pub mod place;
pub mod reading;
pub mod registry;
pub mod report;
pub mod salinity;
pub mod spatial;
pub mod state;
pub mod text;
pub mod wall;

pub use camera::{Camera, CameraGroup, CameraPurpose, CameraScope, CameraState, CameraStatus};
pub use envelope::{Envelope, EventKind, ENVELOPE_VERSION};
pub use error::{FieldError, Invalid};
pub use id::{EntityId, EntityKind, LocalId};
pub use layer::Layer;
pub use place::{AdminUnit, Agency, GeoPoint, Station, StationKind, Zone};
pub use reading::{Measurement, Parameter, RawReading, Reading, Unit};
pub use registry::{Directory, RegistryChange, RegistryEntry};
pub use state::{SourcePosition, StateRecord};
