//! clean-pin 0.1.0: the built-in cleaning, exported through the 0.1.0 world.

sluice_guest::export_transform!(clean_pin::CleanPin);
