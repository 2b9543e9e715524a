//! Typed views of the options network-boot clients and servers exchange: vendor class
//! (60), client architecture (93), network interface id (94), machine UUID (97), user
//! class (77), PXE vendor options (43) and iPXE's encapsulated options (175).

pub mod arch;
pub mod codes;
pub mod ipxe;
pub mod machine;
pub mod pxe_vendor;
mod sub_tlv;
pub mod vendor_class;

pub use arch::ClientArch;
pub use ipxe::IpxeOptions;
pub use machine::{MachineId, NetworkInterfaceId, UserClass};
pub use pxe_vendor::{BootItem, BootServer, MenuItem, MenuPrompt, PxeSubOption, PxeVendor};
pub use vendor_class::{VendorClass, VendorKind};
