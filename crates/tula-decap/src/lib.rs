//! Backend host setup for tunnelled DSR traffic (tula decap).
