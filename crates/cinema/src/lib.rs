//! The demo cinema shop. Built in the demo issue; empty until then.
