//! Reports plugin ABI version 2 and nothing else: the host must refuse it before looking up
//! any other symbol.

#[no_mangle]
pub extern "C" fn runner_plugin_abi_version() -> u32 {
    2
}
