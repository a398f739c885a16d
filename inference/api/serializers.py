"""Response shapes of the OpenAI-compatible API, for the schema."""

from rest_framework import serializers


class ModelEntrySerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.CharField()
    object = serializers.CharField(default="model")
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class ModelListSerializer(serializers.Serializer):  # type: ignore[type-arg]
    object = serializers.CharField(default="list")
    # DRF moves declared fields off the class, so this does not shadow `Serializer.data` at run time.
    data = ModelEntrySerializer(many=True)  # type: ignore[assignment]


class ChatMessageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    role = serializers.ChoiceField(choices=["system", "developer", "user", "assistant", "tool"])
    content = serializers.CharField(help_text="Text, or a list of {type: text, text} parts.")


class StreamOptionsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    include_usage = serializers.BooleanField(default=False)


class ChatCompletionRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField()
    messages = ChatMessageSerializer(many=True)
    tools = serializers.ListField(
        child=serializers.JSONField(), required=False, help_text="Functions the model may call."
    )
    tool_choice = serializers.JSONField(
        required=False, help_text="none, auto, required, or a named function."
    )
    parallel_tool_calls = serializers.BooleanField(required=False)
    response_format = serializers.JSONField(required=False, help_text="text, json_object or json_schema.")
    max_tokens = serializers.IntegerField(required=False, min_value=1, help_text="Capped per model.")
    max_completion_tokens = serializers.IntegerField(required=False, min_value=1)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, min_value=0, max_value=1)
    stop = serializers.ListField(child=serializers.CharField(), required=False, max_length=4)
    stream = serializers.BooleanField(default=False)
    stream_options = StreamOptionsSerializer(required=False)
    n = serializers.IntegerField(
        required=False, min_value=1, max_value=128, help_text="Choices to write; capped per model."
    )
    seed = serializers.IntegerField(required=False, help_text="The same seed samples the same text.")
    logprobs = serializers.BooleanField(required=False, help_text="Each token's log probability.")
    top_logprobs = serializers.IntegerField(
        required=False, min_value=0, max_value=20, help_text="Alternatives per token (with logprobs)."
    )


class CompletionMessageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    role = serializers.CharField(default="assistant")
    content = serializers.CharField()


class CompletionChoiceSerializer(serializers.Serializer):  # type: ignore[type-arg]
    index = serializers.IntegerField()
    message = CompletionMessageSerializer()
    logprobs = serializers.JSONField(
        allow_null=True, help_text="{content: [{token, logprob, bytes, top_logprobs}]}, where asked."
    )
    finish_reason = serializers.ChoiceField(choices=["stop", "length", "tool_calls"])


class UsageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class ChatCompletionSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.CharField()
    object = serializers.CharField(default="chat.completion")
    created = serializers.IntegerField()
    model = serializers.CharField()
    system_fingerprint = serializers.CharField(help_text="model@version that answered")
    choices = CompletionChoiceSerializer(many=True)
    usage = UsageSerializer()


class TextCompletionRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField()
    prompt = serializers.CharField(help_text="A string, or a list of one string.")
    max_tokens = serializers.IntegerField(
        required=False, min_value=1, help_text="16 unless said; capped per model."
    )
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, min_value=0, max_value=1)
    stop = serializers.ListField(child=serializers.CharField(), required=False, max_length=4)
    stream = serializers.BooleanField(default=False)
    stream_options = StreamOptionsSerializer(required=False)
    n = serializers.IntegerField(
        required=False, min_value=1, max_value=128, help_text="Choices to write; capped per model."
    )
    seed = serializers.IntegerField(required=False, help_text="The same seed samples the same text.")


class TextCompletionChoiceSerializer(serializers.Serializer):  # type: ignore[type-arg]
    index = serializers.IntegerField()
    text = serializers.CharField()
    finish_reason = serializers.ChoiceField(choices=["stop", "length"])


class TextCompletionSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.CharField()
    object = serializers.CharField(default="text_completion")
    created = serializers.IntegerField()
    model = serializers.CharField()
    system_fingerprint = serializers.CharField(help_text="model@version that answered")
    choices = TextCompletionChoiceSerializer(many=True)
    usage = UsageSerializer()


class EmbeddingRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField()
    input = serializers.ListField(
        child=serializers.CharField(), min_length=1, max_length=2048, help_text="A string, or a list of them."
    )
    encoding_format = serializers.ChoiceField(choices=["float", "base64"], default="float")
    dimensions = serializers.IntegerField(required=False, min_value=1)


class EmbeddingSerializer(serializers.Serializer):  # type: ignore[type-arg]
    object = serializers.CharField(default="embedding")
    index = serializers.IntegerField()
    embedding = serializers.ListField(
        child=serializers.FloatField(), help_text="Floats, or with encoding_format base64 a string."
    )


class EmbeddingUsageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    prompt_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class EmbeddingListSerializer(serializers.Serializer):  # type: ignore[type-arg]
    object = serializers.CharField(default="list")
    data = EmbeddingSerializer(many=True)  # type: ignore[assignment]
    model = serializers.CharField()
    usage = EmbeddingUsageSerializer()


class ResponseRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    model = serializers.CharField()
    input = serializers.JSONField(
        help_text="A string, or message / function_call / function_call_output items."
    )
    instructions = serializers.CharField(required=False)
    tools = serializers.ListField(child=serializers.JSONField(), required=False, help_text="Function tools.")
    tool_choice = serializers.JSONField(required=False)
    text = serializers.JSONField(required=False, help_text="{format: text | json_object | json_schema}")
    max_output_tokens = serializers.IntegerField(required=False, min_value=1)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, min_value=0, max_value=1)
    stream = serializers.BooleanField(default=False)
    store = serializers.BooleanField(required=False, help_text="Must be false: nothing is stored.")


class ResponseUsageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class ResponseSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.CharField()
    object = serializers.CharField(default="response")
    created_at = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["completed", "incomplete", "failed"])
    model = serializers.CharField()
    output = serializers.ListField(child=serializers.JSONField(), help_text="message and function_call items")
    usage = ResponseUsageSerializer()
