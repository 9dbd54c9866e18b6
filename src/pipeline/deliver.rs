//! What one destination (a registry or an OCI layout) receives, in order: the
//! images, then the signatures and attestations that refer to them. Tags are moved
//! later, by the caller, once everything else is stored.

use std::collections::HashSet;
use std::path::PathBuf;

use super::{BuildError, PackagePlan, Phase, Progress};
use crate::attest::SbomDocument;
use crate::image::{Artifact, Descriptor};
use crate::publish::{self, PublishRequest, PublishStats, Publisher};
use crate::sign::{self, Attachment, SignError, Signer, SignerIdentity, Signing};

/// What one destination got.
pub(super) struct Delivered {
    pub(super) stats: PublishStats,
    /// Per package, what was signed and attested.
    pub(super) attachments: Vec<Vec<Attachment>>,
    /// Digests of the artifacts new to the destination (their tags cannot point there
    /// yet).
    pub(super) new: HashSet<String>,
}

/// Everything one destination receives: images first, then what refers to them.
pub(super) struct Delivery<'a> {
    pub(super) plans: &'a [PackagePlan],
    pub(super) artifacts: &'a [(Artifact, Option<Artifact>)],
    pub(super) sboms: &'a [Vec<(SbomDocument, Option<PathBuf>)>],
    pub(super) tags: &'a [String],
    pub(super) wasm_tags: &'a [String],
    pub(super) signing: Option<&'a Signing>,
    /// Made at the first signature, then shared by every destination.
    pub(super) keyless_signer: tokio::sync::OnceCell<Signer>,
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
        repos: &[String],
        progress: &Progress<'_>,
    ) -> Result<Delivered, BuildError> {
        let requests = requests_for(self.plans, self.artifacts, self.tags, self.wasm_tags, repos);
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
        let mut attachments = Vec::new();
        for (i, (artifact, _)) in self.artifacts.iter().enumerate() {
            let Some(signer) = self.signer(progress).await.map_err(failed)? else {
                attachments.push(Vec::new());
                continue;
            };
            let mut subjects: Vec<Descriptor> = Vec::new();
            if let Artifact::Index { descriptor, .. } = artifact {
                subjects.push(descriptor.clone());
            }
            subjects.extend(artifact.images().iter().map(|i| i.descriptor.clone()));
            let sboms: Vec<&SbomDocument> = self.sboms[i].iter().map(|(doc, _)| doc).collect();
            let claims = sign::claims_for(&repos[i], &subjects, &sboms, self.provenance);
            progress(
                Phase::Sign,
                &format!(
                    "signing and attesting {} ({} items)",
                    repos[i],
                    claims.len()
                ),
            );
            attachments.push(
                sign::attach(
                    publisher,
                    signer,
                    &claims,
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

pub(super) fn add(total: &mut PublishStats, s: PublishStats) {
    total.blobs_uploaded += s.blobs_uploaded;
    total.blobs_existing += s.blobs_existing;
    total.blobs_mounted += s.blobs_mounted;
    total.manifests += s.manifests;
    total.manifests_existing += s.manifests_existing;
    total.tags += s.tags;
}

pub(super) fn requests_for<'a>(
    plans: &[PackagePlan],
    artifacts: &'a [(Artifact, Option<Artifact>)],
    tags: &[String],
    wasm_tags: &[String],
    repos: &[String],
) -> Vec<PublishRequest<'a>> {
    let mut requests = Vec::new();
    for ((_, (artifact, wasm)), repo) in plans.iter().zip(artifacts).zip(repos) {
        requests.push(PublishRequest {
            repository: repo.clone(),
            artifact,
            tags: tags.to_vec(),
        });
        if let Some(wasm) = wasm {
            requests.push(PublishRequest {
                repository: repo.clone(),
                artifact: wasm,
                tags: wasm_tags.to_vec(),
            });
        }
    }
    requests
}
