//! iommu-walk (being built).
