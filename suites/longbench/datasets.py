"""The LongBench (v1) datasets: official prompt template, generation length, metric and language of each.

Templates and maximum generation lengths follow LongBench's config/dataset2prompt.json and
config/dataset2maxlen.json; metrics follow its eval.py. LongBench-E files are named `<dataset>_e`
and use the settings of their base dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

_PASSAGES_QA = (
    "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\n"
    "The following are given passages.\n{context}\n\n"
    "Answer the question based on the given passages. Only give me the answer and do not output any other words.\n\n"
    "Question: {input}\nAnswer:"
)

_QASPER_RULES = (
    "as concisely as you can, using a single phrase or sentence if possible. If the question cannot be answered "
    "based on the information in the article, write \"unanswerable\". If the question is a yes/no question, answer "
    "\"yes\", \"no\", or \"unanswerable\". Do not provide any explanation."
)

_NARRATIVE_RULES = "as concisely as you can, using a single phrase if possible. Do not provide any explanation."


@dataclass(frozen=True)
class DatasetSpec:
    """How one LongBench dataset is prompted and scored.

    name       dataset name as in LongBench (`hotpotqa`, `repobench-p`, ...)
    prompt     template with `{context}` and `{input}` fields
    max_gen    maximum number of generated tokens
    metric     metric name, a key of `metrics.METRICS`
    language   'en' or 'zh'
    category   LongBench task category
    """

    name: str
    prompt: str
    max_gen: int
    metric: str
    language: str
    category: str

    @property
    def first_line_only(self) -> bool:
        """Few-shot tasks: LongBench scores only the first line of the prediction."""
        return self.name in FIRST_LINE_DATASETS

    @property
    def stop(self) -> tuple[str, ...]:
        """Stop strings for generation (LongBench stops samsum at a newline)."""
        return ("\n",) if self.name == "samsum" else ()


FIRST_LINE_DATASETS = frozenset({"trec", "triviaqa", "samsum", "lsht"})

_SPECS = [
    DatasetSpec(
        "narrativeqa",
        "You are given a story, which can be either a novel or a movie script, and a question. Answer the question "
        f"{_NARRATIVE_RULES}\n\nStory: {{context}}\n\nNow, answer the question based on the story {_NARRATIVE_RULES}"
        "\n\nQuestion: {input}\n\nAnswer:",
        128, "qa_f1", "en", "single-doc qa",
    ),
    DatasetSpec(
        "qasper",
        f"You are given a scientific article and a question. Answer the question {_QASPER_RULES}\n\n"
        f"Article: {{context}}\n\n Answer the question based on the above article {_QASPER_RULES}\n\n"
        "Question: {input}\n\nAnswer:",
        128, "qa_f1", "en", "single-doc qa",
    ),
    DatasetSpec(
        "multifieldqa_en",
        "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on the "
        "above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:",
        64, "qa_f1", "en", "single-doc qa",
    ),
    DatasetSpec(
        "multifieldqa_zh",
        "阅读以下文字并用中文简短回答：\n\n{context}\n\n现在请基于上面的文章回答下面的问题，只告诉我答案，不要输出任何其他字词。\n\n"
        "问题：{input}\n回答：",
        64, "qa_f1_zh", "zh", "single-doc qa",
    ),
    DatasetSpec("hotpotqa", _PASSAGES_QA, 32, "qa_f1", "en", "multi-doc qa"),
    DatasetSpec("2wikimqa", _PASSAGES_QA, 32, "qa_f1", "en", "multi-doc qa"),
    DatasetSpec("musique", _PASSAGES_QA, 32, "qa_f1", "en", "multi-doc qa"),
    DatasetSpec(
        "dureader",
        "请基于给定的文章回答下述问题。\n\n文章：{context}\n\n请基于上述文章回答下面的问题。\n\n问题：{input}\n回答：",
        128, "rouge_l_zh", "zh", "multi-doc qa",
    ),
    DatasetSpec(
        "gov_report",
        "You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n"
        "{context}\n\nNow, write a one-page summary of the report.\n\nSummary:",
        512, "rouge_l", "en", "summarization",
    ),
    DatasetSpec(
        "qmsum",
        "You are given a meeting transcript and a query containing a question or instruction. Answer the query in one "
        "or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting transcript "
        "in one or more sentences.\n\nQuery: {input}\nAnswer:",
        512, "rouge_l", "en", "summarization",
    ),
    DatasetSpec(
        "multi_news",
        "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\n"
        "Now, write a one-page summary of all the news.\n\nSummary:",
        512, "rouge_l", "en", "summarization",
    ),
    DatasetSpec(
        "vcsum",
        "下面有一段会议记录，请你阅读后，写一段总结，总结会议的内容。\n会议记录：\n{context}\n\n会议总结：",
        512, "rouge_l_zh", "zh", "summarization",
    ),
    DatasetSpec(
        "trec",
        "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}",
        64, "classification", "en", "few-shot",
    ),
    DatasetSpec(
        "triviaqa",
        "Answer the question based on the given passage. Only give me the answer and do not output any other words. "
        "The following are some examples.\n\n{context}\n\n{input}",
        32, "qa_f1", "en", "few-shot",
    ),
    DatasetSpec(
        "samsum",
        "Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}",
        128, "rouge_l", "en", "few-shot",
    ),
    DatasetSpec(
        "lsht",
        "请判断给定新闻的类别，下面是一些例子。\n\n{context}\n{input}",
        64, "classification", "zh", "few-shot",
    ),
    DatasetSpec(
        "passage_count",
        "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully read "
        "these paragraphs and determine how many unique paragraphs there are after removing duplicates. In other "
        "words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final count of "
        "unique paragraphs after removing duplicates. The output format should only contain the number, such as 1, "
        "2, 3, and so on.\n\nThe final answer is: ",
        32, "count", "en", "synthetic",
    ),
    DatasetSpec(
        "passage_retrieval_en",
        "Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the abstract "
        "is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of the "
        "paragraph that the abstract is from. The answer format must be like \"Paragraph 1\", \"Paragraph 2\", etc."
        "\n\nThe answer is: ",
        32, "retrieval", "en", "synthetic",
    ),
    DatasetSpec(
        "passage_retrieval_zh",
        "以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n{context}\n\n下面是一个摘要\n\n{input}\n\n"
        "请输入摘要所属段落的编号。答案格式必须是\"段落1\"，\"段落2\"等格式\n\n答案是：",
        32, "retrieval_zh", "zh", "synthetic",
    ),
    DatasetSpec(
        "lcc",
        "Please complete the code given below. \n{context}Next line of code:\n",
        64, "code_sim", "en", "code",
    ),
    DatasetSpec(
        "repobench-p",
        "Please complete the code given below. \n{context}{input}Next line of code:\n",
        64, "code_sim", "en", "code",
    ),
]

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}

# The 13 datasets of LongBench-E (files `<name>_e.jsonl`), whose examples spread over 0-4k, 4-8k, 8k+ words.
LONGBENCH_E = (
    "qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "gov_report", "multi_news", "trec", "triviaqa",
    "samsum", "passage_count", "passage_retrieval_en", "lcc", "repobench-p",
)

ALL_SUBSETS = tuple(DATASETS) + tuple(f"{name}_e" for name in LONGBENCH_E)


def spec_for(subset: str) -> DatasetSpec:
    """The spec of a subset name: a LongBench dataset or a LongBench-E variant `<name>_e`."""
    if subset in DATASETS:
        return DATASETS[subset]
    if subset.endswith("_e") and subset[:-2] in LONGBENCH_E:
        return DATASETS[subset[:-2]]
    raise KeyError(subset)


def build_prompt(spec: DatasetSpec, record: dict) -> str:
    """The dataset's official prompt filled with one example's context and input."""
    return spec.prompt.format(context=record["context"], input=record["input"])


LENGTH_BUCKETS = ("0-4k", "4-8k", "8k+")


def length_bucket(length: int) -> str:
    """LongBench-E bucket of an example's `length` (words, or characters for Chinese): 0-4k, 4-8k, 8k+."""
    if length < 4000:
        return "0-4k"
    if length < 8000:
        return "4-8k"
    return "8k+"
