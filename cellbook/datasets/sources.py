"""The registry entries: one per dataset the book can use (official sources first)."""
from .registry import Dataset, RawFile, register

# ----------------------------------------------------------------- Part I: scRNA-seq
GSE194122_CITE = register(Dataset(
    name="gse194122_cite",
    title="NeurIPS 2021 BMMC CITE-seq, processed (GEO GSE194122)",
    source="https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE194122",
    citation="Luecken et al., NeurIPS 2021 Datasets and Benchmarks",
    files=("GSE194122_openproblems_neurips2021_cite_BMMC_processed.h5ad.gz",),
    sha256={"GSE194122_openproblems_neurips2021_cite_BMMC_processed.h5ad.gz":
            "b9b50fade9349719cba23c97c6515d3501a32ee3735fe95fe51221d2e8a5f361"},
    builder="copy", kind="files",
    raw=(RawFile("GSE194122/GSE194122_openproblems_neurips2021_cite_BMMC_processed.h5ad.gz",
                 "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE194nnn/GSE194122/suppl/"
                 "GSE194122_openproblems_neurips2021_cite_BMMC_processed.h5ad.gz",
                 "sha256:b9b50fade9349719cba23c97c6515d3501a32ee3735fe95fe51221d2e8a5f361"),),
    note="raw counts in layers['counts'], labels in obs['cell_type']",
))
GSE194122_MULTIOME = register(Dataset(
    name="gse194122_multiome",
    title="NeurIPS 2021 BMMC Multiome, processed (GEO GSE194122)",
    source="https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE194122",
    citation="Luecken et al., NeurIPS 2021 Datasets and Benchmarks",
    files=("GSE194122_openproblems_neurips2021_multiome_BMMC_processed.h5ad.gz",),
    builder="copy", kind="files",
    raw=(RawFile("GSE194122/GSE194122_openproblems_neurips2021_multiome_BMMC_processed.h5ad.gz",
                 "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE194nnn/GSE194122/suppl/"
                 "GSE194122_openproblems_neurips2021_multiome_BMMC_processed.h5ad.gz"),),
    note="GEX and ATAC features; the loader keeps feature_types == 'GEX'; no published checksum "
         "(the download is recorded with its sha256 but cannot be checked against a pin)",
))
NEURIPS_STARTER = register(Dataset(
    name="neurips2021_bmmc_cite_starter",
    title="NeurIPS 2021 BMMC CITE-seq starter subset (600 cells x 1000 genes of GSE194122)",
    source="https://github.com/openproblems-bio/neurips2021_multimodal_viash "
           "(resources_test/common/openproblems_bmmc_cite_starter)",
    citation="Luecken et al., NeurIPS 2021 Datasets and Benchmarks",
    files=("neurips2021_bmmc_cite_starter.h5ad",),
    sha256={"neurips2021_bmmc_cite_starter.h5ad":
            "57341f6d64748a370318ca6bc7aa805043c8347de35b5b1fb97109f76bd89e50"},
    builder="neurips_starter",
    content_sha256="934f34e6dd06f3fa9b73112e6bad5f9436b0ac76b1424df90b2a21d3019d4ab7",
))
PBMC10K = register(Dataset(
    name="pbmc10k_multiome",
    title="10x Genomics PBMC granulocyte-sorted 10k Multiome (cell-arc 2.0.0) + MOFA+ labels",
    source="https://www.10xgenomics.com/datasets/pbmc-from-a-healthy-donor-granulocytes-removed-through-"
           "cell-sorting-10-k-1-standard-2-0-0",
    citation="10x Genomics (2021); Argelaguet et al., MOFA+ multiome vignette",
    files=("pbmc_granulocyte_sorted_10k_filtered_feature_bc_matrix.h5", "filtered_cell_metadata.tsv.gz"),
    builder="copy", kind="files",
    raw=(RawFile("pbmc10k_multiome/pbmc_granulocyte_sorted_10k_filtered_feature_bc_matrix.h5",
                 "https://cf.10xgenomics.com/samples/cell-arc/2.0.0/pbmc_granulocyte_sorted_10k/"
                 "pbmc_granulocyte_sorted_10k_filtered_feature_bc_matrix.h5"),
         RawFile("pbmc10k_multiome/filtered_cell_metadata.tsv.gz",
                 "ftp://ftp.ebi.ac.uk/pub/databases/mofa/10x_rna_atac_vignette/filtered_cell_metadata.tsv.gz")),
    note="the data the paper's 10032 cells / 14 labels match (see REFERENCE); no published checksums",
))
VANGALEN = register(Dataset(
    name="vangalen2019_bm_seqwell",
    title="Human bone marrow, Seq-Well (van Galen et al. 2019, GEO GSE116256), 15 normal cell types",
    source="https://www.ncbi.nlm.nih.gov/geo/query/acc.cgi?acc=GSE116256",
    citation="van Galen et al., Cell 176:1265 (2019)",
    files=("vangalen2019_bm_seqwell.h5ad",),
    sha256={"vangalen2019_bm_seqwell.h5ad":
            "dcdf56c0d5662d14e0b6cbf3d5e6e989f7c650136ce4e093bbb442a27b759ab4"},
    builder="vangalen2019",
    content_sha256="1127ab66c3797ef8332484a4bb1acaa85ad0fb6a4ad4fcff7e0dc9beb6f10f1d",
    note="3641 normal cells of 3 healthy donors and 15 AML patients; raw UMI counts",
))

# ------------------------------------------------------------- Part II: microscopy
STEMCELL = register(Dataset(
    name="stemcell_passage_phase",
    title="Stem-cell phase-contrast micrographs at passage P2 / P6 / P7 (152 tiles of 38 frames)",
    source="https://github.com/sunako110/Cell-Segmentation (trainingset_original, testset_original)",
    citation="images provided by Tsinghua Yangtze Delta Research Institute via sunako110/Cell-Segmentation",
    marker="metadata.csv", kind="images", builder="stemcell",
    content_sha256="f037b134b78571dc748758576832b2b4d33f9d368926490298a098ded562b5c4",
    note="no licence stated: internal use only, never redistributed",
))
HEK_HT1080 = register(Dataset(
    name="hek293a_ht1080_brightfield",
    title="HEK293A vs HT1080 bright-field single-cell crops (Yao, Rochman & Sun 2019)",
    source="https://github.com/sxslabjhu/CellTypeClassification (NeuralNetworkTraining)",
    citation="Yao, Rochman & Sun, bioRxiv 533216 (2019)",
    marker="metadata.csv", kind="images", builder="hek",
    content_sha256="e31608ced68b6182873af72fb23f0142cfa1f03dc5e4d4eb6c54fa17792b0eac",
))

# ---------------------------------------------------------- Part III: expression
TCGA6 = register(Dataset(
    name="tcga6_rnasum_counts",
    title="TCGA primary tumours of 6 tissues, raw HTSeq counts (364 samples)",
    source="https://github.com/umccr/RNAsum.data (inst/extdata/ref_data); original data: TCGA / GDC",
    citation="The Cancer Genome Atlas; RNAsum (UMCCR)",
    files=("tcga6_rnasum_counts.h5ad",),
    sha256={"tcga6_rnasum_counts.h5ad": "d8c9c1a94653e8a920b27db9167569d34cb46964fa2fe049cbf5d8cef80c4eb6"},
    builder="tcga6",
    content_sha256="94a3db7ec65a90f5adb2ab67a73ca9f856582cb320429432b275ae2f1e2ce5be",
))
CELLNET = register(Dataset(
    name="cellnet_hg1133plus2",
    title="CellNet human compendium (Affymetrix HG-U133 Plus 2; 16 tissues/cell types x 65)",
    source="http://cellnet.hms.harvard.edu/downloads/ (CellNet_hg1133plus2 training data)",
    citation="Cahan et al., Cell 158:903 (2014); Abdolhosseini et al., Sci. Rep. 9:2342 (2019)",
    files=("cellnet_hg1133plus2.h5ad",),
    note=("not downloadable automatically: convert the compendium to an AnnData (samples x genes, "
          "obs['cell_type']) once"),
))
GENESETS = register(Dataset(
    name="genesets",
    title="Gene-set collections (GMT): MSigDB GO BP/CC v6.2, Reactome, WikiPathways, Hallmark",
    source="https://www.gsea-msigdb.org/gsea/msigdb (MSigDB); https://reactome.org/download-data",
    citation="Subramanian et al. 2005; Liberzon et al. 2011/2015; Reactome; WikiPathways",
    marker="msigdb_h.all.v2023.2.Hs.symbols.gmt", kind="files", builder="copy",
    note="unmodified copies of GMT files committed to public repositories at pinned commits; see "
         "manifests/genesets.tsv for each file's source",
))
