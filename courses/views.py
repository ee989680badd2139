from django.http import JsonResponse


def healthz(request):
    return JsonResponse({"status": "ok"})


def error_400(request, exception=None):
    return JsonResponse({}, status=400)


error_403 = error_404 = error_500 = error_400
