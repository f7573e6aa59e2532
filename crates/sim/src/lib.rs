//! iommu-sim (being built).
