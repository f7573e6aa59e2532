//! iommu-hw (being built).
