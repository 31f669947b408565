from sparc_video.cli.main import main

main()
