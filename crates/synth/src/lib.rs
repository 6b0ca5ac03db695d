//! A synthetic Japanese region: people, facilities, care histories and each facility's data.
