//! iommu-cache (being built).
