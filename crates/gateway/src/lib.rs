//! The Lipa gateway. Built in the gateway-core issue; empty until then.
