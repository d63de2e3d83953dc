//! ASTM E1381 link layer and E1394 records.
