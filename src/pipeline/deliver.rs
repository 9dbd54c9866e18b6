//! What one destination (a registry or an OCI layout) receives, in order: the
//! images, then the signatures and attestations that refer to them (or, for a build
//! that does not sign, its SBOMs and provenance unsigned). Tags are moved later, by
//! the caller, once everything else is stored.

use std::collections::HashSet;

use super::{Assembled, BuildError, PackagePlan, Phase, Progress};
use crate::attest::SbomDocument;
use crate::image::{Artifact, Descriptor};
use crate::publish::{self, PublishRequest, PublishStats, Publisher};
use crate::sign::{self, Attachment, SignError, SignedSubject, Signer, SignerIdentity, Signing};

/// What one destination got.
pub(super) struct Delivered {
    pub(super) stats: PublishStats,
    /// Per package, what was signed and attested.
    pub(super) attachments: Vec<Vec<Attachment>>,
    /// Digests of the artifacts new to the destination (their tags cannot point there
    /// yet).
    pub(super) new: HashSet<crate::image::Digest>,
}

/// Which of the two destinations a package is delivered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Destination {
    Registry,
    Layout,
}

impl Destination {
    /// The package's repository there, as its plan names it.
    fn repository(self, plan: &PackagePlan) -> String {
        match self {
            Destination::Registry => plan
                .registry_repo
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            Destination::Layout => plan.layout_repo.clone(),
        }
    }
}

/// Everything one destination receives: images first, then what refers to them.
pub(super) struct Delivery<'a> {
    pub(super) packages: &'a [Assembled],
    pub(super) tags: &'a [String],
    pub(super) wasm_tags: &'a [String],
    pub(super) signing: Option<&'a Signing>,
    /// Made at the first signature, then shared by every destination.
    pub(super) keyless_signer: tokio::sync::OnceCell<Signer>,
    /// Per package, its claims signed: made for the first destination, stored in all.
    pub(super) signed: tokio::sync::OnceCell<Vec<Vec<SignedSubject>>>,
    pub(super) provenance: Option<&'a serde_json::Value>,
    pub(super) legacy_attestations: bool,
    pub(super) created: i64,
}

impl Delivery<'_> {
    pub(super) fn signer_identity(&self) -> Option<SignerIdentity> {
        match self.signing? {
            Signing::Key(signer) => Some(signer.identity()),
            Signing::Keyless(_) => self.keyless_signer.get().map(Signer::identity),
        }
    }

    /// Every package's claims, signed once: the first destination signs, the others
    /// store the same signatures. The claims name the package's registry repository
    /// when it is pushed, else its place in the layout.
    async fn signed(
        &self,
        signer: &Signer,
        progress: &Progress<'_>,
    ) -> Result<&[Vec<SignedSubject>], SignError> {
        self.signed
            .get_or_try_init(|| async {
                let mut all = Vec::new();
                for package in self.packages {
                    let repository = named_in_claims(&package.plan);
                    let claims = sign::claims_for(
                        &repository,
                        &subjects(&package.artifact),
                        &package.sbom_documents(),
                        self.provenance,
                    );
                    progress(
                        Phase::Sign,
                        &format!(
                            "signing and attesting {repository} ({} items)",
                            claims.len()
                        ),
                    );
                    all.push(sign::sign_claims(signer, &claims).await?);
                }
                Ok(all)
            })
            .await
            .map(Vec::as_slice)
    }

    /// The signer, if signing: a keyless one gets its certificate now, after the
    /// images are pushed, so its ten minutes are spent signing.
    async fn signer(&self, progress: &Progress<'_>) -> Result<Option<&Signer>, SignError> {
        match self.signing {
            None => Ok(None),
            Some(Signing::Key(signer)) => Ok(Some(signer)),
            Some(Signing::Keyless(keyless)) => self
                .keyless_signer
                .get_or_try_init(|| {
                    progress(
                        Phase::Sign,
                        &format!(
                            "requesting a signing certificate from {}",
                            keyless.fulcio_url
                        ),
                    );
                    Signer::keyless(keyless)
                })
                .await
                .map(Some),
        }
    }

    pub(super) async fn deliver(
        &self,
        publisher: &dyn Publisher,
        destination: Destination,
        progress: &Progress<'_>,
    ) -> Result<Delivered, BuildError> {
        let requests = requests_for(self.packages, self.tags, self.wasm_tags, destination);
        let (stats, new) = publish::publish(publisher, &requests).await?;
        let pushed = || {
            requests
                .iter()
                .map(|r| format!("{}@{}", r.repository, r.artifact.descriptor().digest))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let failed = |source| BuildError::Sign {
            pushed: pushed(),
            source: Box::new(source),
        };
        let Some(signer) = self.signer(progress).await.map_err(failed)? else {
            let mut attachments = Vec::new();
            for package in self.packages {
                attachments.push(
                    sign::store_unsigned(
                        publisher,
                        &destination.repository(&package.plan),
                        &named_in_claims(&package.plan),
                        &subjects(&package.artifact),
                        &package.sbom_documents(),
                        self.provenance,
                        self.created,
                    )
                    .await
                    .map_err(failed)?,
                );
            }
            return Ok(Delivered {
                stats,
                attachments,
                new,
            });
        };
        let signed = self.signed(signer, progress).await.map_err(failed)?;
        let mut attachments = Vec::new();
        for (package, signed) in self.packages.iter().zip(signed) {
            attachments.push(
                sign::store_signed(
                    publisher,
                    &destination.repository(&package.plan),
                    signer,
                    signed,
                    self.legacy_attestations,
                    self.created,
                )
                .await
                .map_err(failed)?,
            );
        }
        Ok(Delivered {
            stats,
            attachments,
            new,
        })
    }
}

/// The repository that statements about a package name: its registry repository when
/// it is pushed, else its place in the layout.
fn named_in_claims(plan: &PackagePlan) -> String {
    plan.registry_repo
        .as_ref()
        .map_or_else(|| plan.layout_repo.clone(), ToString::to_string)
}

/// What is signed and attested about an artifact: its index, when it has one, and
/// every image.
fn subjects(artifact: &Artifact) -> Vec<Descriptor> {
    let mut subjects: Vec<Descriptor> = Vec::new();
    if let Artifact::Index { descriptor, .. } = artifact {
        subjects.push(descriptor.clone());
    }
    subjects.extend(artifact.images().iter().map(|i| i.descriptor.clone()));
    subjects
}

impl Assembled {
    fn sbom_documents(&self) -> Vec<&SbomDocument> {
        self.sboms.iter().map(|(doc, _)| doc).collect()
    }
}

pub(super) fn add(total: &mut PublishStats, s: PublishStats) {
    total.blobs_uploaded += s.blobs_uploaded;
    total.blobs_existing += s.blobs_existing;
    total.blobs_mounted += s.blobs_mounted;
    total.manifests += s.manifests;
    total.manifests_existing += s.manifests_existing;
    total.tags += s.tags;
}

/// What `destination` stores for each package: its artifact under the tags, and the
/// CNCF Wasm artifact under the `-wasm` tags.
pub(super) fn requests_for<'a>(
    packages: &'a [Assembled],
    tags: &[String],
    wasm_tags: &[String],
    destination: Destination,
) -> Vec<PublishRequest<'a>> {
    let mut requests = Vec::new();
    for package in packages {
        let repository = destination.repository(&package.plan);
        requests.push(PublishRequest {
            repository: repository.clone(),
            artifact: &package.artifact,
            tags: tags.to_vec(),
        });
        if let Some(wasm) = &package.wasm {
            requests.push(PublishRequest {
                repository,
                artifact: wasm,
                tags: wasm_tags.to_vec(),
            });
        }
    }
    requests
}
