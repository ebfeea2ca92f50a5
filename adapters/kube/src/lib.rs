//! knactor-kube: knactor on Kubernetes. [`crd`] holds the Knative resources as custom resources
//! (generated from the API shapes of `knactor-actors`).

pub mod crd;
